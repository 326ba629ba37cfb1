-- Users and API keys: the identity core of coderd.

CREATE TYPE user_status AS ENUM ('active', 'suspended', 'dormant');

CREATE TYPE login_type AS ENUM ('password', 'token');

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    username text NOT NULL,
    name text NOT NULL DEFAULT '',
    hashed_password bytea NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    status user_status NOT NULL DEFAULT 'active',
    rbac_roles text[] NOT NULL DEFAULT '{}',
    login_type login_type NOT NULL DEFAULT 'password',
    last_seen_at timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    deleted boolean NOT NULL DEFAULT false
);

CREATE UNIQUE INDEX users_username_lower_idx ON users (lower(username)) WHERE deleted = false;

CREATE UNIQUE INDEX users_email_lower_idx ON users (lower(email)) WHERE deleted = false;

COMMENT ON COLUMN users.hashed_password IS 'Password hash (never the password itself); empty for users that cannot log in with a password.';

CREATE TABLE api_keys (
    id text PRIMARY KEY,
    hashed_secret bytea NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_used timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    login_type login_type NOT NULL,
    lifetime_seconds bigint NOT NULL DEFAULT 86400,
    token_name text NOT NULL DEFAULT '',
    scope text NOT NULL DEFAULT 'all'
);

COMMENT ON COLUMN api_keys.hashed_secret IS 'SHA-256 of the key secret; the secret itself is never stored.';

CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE UNIQUE INDEX api_keys_user_id_token_name_idx ON api_keys (user_id, token_name) WHERE login_type = 'token';
