-- High availability: several coderd replicas on one database.

-- Every coderd started with an external PostgreSQL registers itself here and
-- refreshes updated_at every few seconds; rows not refreshed for a while are
-- deleted by the other replicas.
CREATE TABLE replicas (
	id uuid PRIMARY KEY,
	hostname text NOT NULL,
	region_id integer NOT NULL,
	-- The URL other replicas reach this replica's DERP relay at (empty: no mesh).
	relay_address text NOT NULL DEFAULT '',
	version text NOT NULL,
	started_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	-- Set when the replica shut down cleanly.
	stopped_at timestamptz,
	-- The last error the replica reported about itself (e.g. a relay it cannot mesh with).
	error text NOT NULL DEFAULT ''
);

-- Deployment-wide values generated once (e.g. the DERP mesh key).
CREATE TABLE site_configs (
	key text PRIMARY KEY,
	value text NOT NULL
);

-- The PostgreSQL coordinator (coordinator/pgcoord): one row per coordinator
-- (one per replica), refreshed every heartbeat.
CREATE TABLE tailnet_coordinators (
	id uuid PRIMARY KEY,
	heartbeat_at timestamptz NOT NULL
);

-- A peer's current registration: the coordinator serving it, its node (NULL
-- until it sends one) and whether its connection is up or lost.
CREATE TABLE tailnet_peers (
	id uuid PRIMARY KEY,
	coordinator_id uuid NOT NULL REFERENCES tailnet_coordinators (id) ON DELETE CASCADE,
	-- Identifies one registration, so a replaced registration cannot touch its successor's row.
	registration uuid NOT NULL,
	node bytea,
	-- Counts the node updates of the peer: every update reaches its tunnel
	-- peers, even one repeating the node.
	node_seq bigint NOT NULL DEFAULT 0,
	status text NOT NULL CHECK (status IN ('ok', 'lost')),
	updated_at timestamptz NOT NULL
);
CREATE INDEX tailnet_peers_coordinator_id_idx ON tailnet_peers (coordinator_id);

-- Tunnels peers asked for, owned by the coordinator serving their source.
CREATE TABLE tailnet_tunnels (
	src_id uuid NOT NULL,
	dst_id uuid NOT NULL,
	coordinator_id uuid NOT NULL REFERENCES tailnet_coordinators (id) ON DELETE CASCADE,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (src_id, dst_id)
);
CREATE INDEX tailnet_tunnels_dst_id_idx ON tailnet_tunnels (dst_id);
CREATE INDEX tailnet_tunnels_coordinator_id_idx ON tailnet_tunnels (coordinator_id);

-- The WireGuard node keys held by the peers of each coordinator: a replica's
-- DERP relay admits a key any coordinator knows (a peer's relay connection
-- and coordinator connection may reach different replicas).
CREATE TABLE tailnet_node_keys (
	node_key text NOT NULL,
	coordinator_id uuid NOT NULL REFERENCES tailnet_coordinators (id) ON DELETE CASCADE,
	peer_id uuid NOT NULL,
	PRIMARY KEY (node_key, coordinator_id)
);
CREATE INDEX tailnet_node_keys_coordinator_id_idx ON tailnet_node_keys (coordinator_id);
