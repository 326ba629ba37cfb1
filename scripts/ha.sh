#!/usr/bin/env bash
# Starts a local high-availability deployment to try it out (docs/ha.md):
#   - PostgreSQL: CODER_PG_CONNECTION_URL when set, else a private cluster in
#     $CODER_HA_DIR/postgres on 127.0.0.1:${CODER_HA_PG_PORT:-5433} (PostgreSQL 15 server binaries;
#     run as the postgres user when this script runs as root);
#   - 3 replicas (`coder server`) on 127.0.0.1:3001..3003, each its own DERP relay URL, all with
#     the same state encryption key (generated once into $CODER_HA_DIR/state-encryption-key);
#   - HAProxy on 127.0.0.1:3000 (the access URL) with /healthz checks.
# Ctrl-C stops everything. CODER_HA_DIR defaults to <repo>/.cache/ha. Extra arguments go to
# every `coder server`. Logs: $CODER_HA_DIR/replica-N.log, haproxy.log.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CODER_HA_DIR:-$PWD/.cache/ha}"
mkdir -p "$dir"
cache="${CODER_CACHE_DIR:-$PWD/.cache}"
# The built-in provisioners use the terraform and provider mirror of scripts/deps.sh when present.
if [[ -z "${CODER_TERRAFORM_PATH:-}" && -x "$cache/bin/terraform" && -f "$cache/terraformrc" ]]; then
	export CODER_TERRAFORM_PATH="$cache/bin/terraform" CODER_TERRAFORM_CLI_CONFIG="$cache/terraformrc"
fi
lb_port=3000
replicas=(3001 3002 3003)
pids=()

command -v haproxy >/dev/null || { echo "ha: haproxy is missing (apt-get install haproxy, or scripts/deps.sh)" >&2; exit 1; }
[[ -x bin/coder ]] || { echo "ha: build first (make build)" >&2; exit 1; }

pgbin=/usr/lib/postgresql/15/bin
pgdata="$dir/postgres"
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ -z "${CODER_PG_CONNECTION_URL_GIVEN:-}" && -f "$pgdata/postmaster.pid" ]]; then
		as_pg "$pgbin/pg_ctl" -D "$pgdata" stop -m fast >/dev/null || true
	fi
}
trap cleanup EXIT INT TERM

if [[ -n "${CODER_PG_CONNECTION_URL:-}" ]]; then
	CODER_PG_CONNECTION_URL_GIVEN=1
	pgurl="$CODER_PG_CONNECTION_URL"
else
	pgport="${CODER_HA_PG_PORT:-5433}"
	if [[ ! -f "$pgdata/PG_VERSION" ]]; then
		mkdir -p "$pgdata"
		[[ $EUID -eq 0 ]] && chown postgres "$pgdata" "$dir"
		as_pg "$pgbin/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
	fi
	as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w start \
		-o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdata" >/dev/null
	pgurl="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
fi
keyfile="$dir/state-encryption-key"
[[ -f "$keyfile" ]] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$keyfile"; chmod 600 "$keyfile"; }

# The key goes through the environment twin, not the command line (ps shows that).
CODER_STATE_ENCRYPTION_KEY="$(cat "$keyfile")"
export CODER_STATE_ENCRYPTION_KEY
servers=""
for i in "${!replicas[@]}"; do
	port="${replicas[$i]}"
	./bin/coder server \
		--http-address "127.0.0.1:$port" \
		--access-url "http://127.0.0.1:$lb_port" \
		--postgres-url "$pgurl" \
		--derp-server-relay-url "http://127.0.0.1:$port" \
		--derp-server-stun-addresses "127.0.0.1:$((3478 + i))" \
		--config-dir "$dir/replica-$i" \
		"$@" >"$dir/replica-$i.log" 2>&1 &
	pids+=($!)
	servers+="	server replica$i 127.0.0.1:$port"$'\n'
done

cat >"$dir/haproxy.cfg" <<CFG
global
	maxconn 4096

defaults
	mode http
	timeout connect 5s
	timeout client 1h
	timeout server 1h
	timeout tunnel 1h
	timeout http-request 30s
	option redispatch
	retries 2

frontend coder
	bind 127.0.0.1:$lb_port
	default_backend replicas

backend replicas
	balance roundrobin
	option httpchk GET /healthz
	http-check expect status 200
	default-server check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
$servers
CFG
haproxy -f "$dir/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 120); do
	curl -fsS "http://127.0.0.1:$lb_port/healthz" >/dev/null 2>&1 && break
	sleep 0.5
done
echo "ha: 3 replicas behind HAProxy at http://127.0.0.1:$lb_port (logs in $dir); Ctrl-C stops"
while :; do
	for pid in "${pids[@]}"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "ha: process $pid exited; stopping (see the logs in $dir)" >&2
			exit 1
		fi
	done
	sleep 1
done
