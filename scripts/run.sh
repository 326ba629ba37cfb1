#!/usr/bin/env bash
# Starts coderd for local use: embedded PostgreSQL (unless CODER_PG_CONNECTION_URL is set),
# reachable at http://127.0.0.1:3000. Data lives in CODER_CONFIG_DIR (default ~/.config/coderv2).
# The built-in provisioner daemons run the terraform and provider mirror that scripts/deps.sh
# installed into CODER_CACHE_DIR (default <repo>/.cache), named explicitly through the
# environment twins of --terraform-path and --terraform-cli-config (set those to override;
# TF_CLI_CONFIG_FILE is not used here: the cache's terraformrc is what serves the providers offline).
#
# Docker workspaces (examples/templates/docker): the Docker daemon is started when it is not
# running, and coderd also listens on the Docker bridge's address (docker0, usually
# 172.17.0.1:3000) so that containers reach it as host.docker.internal (the template rewrites
# 127.0.0.1/localhost in the agent's init script to that name, mapped to the bridge gateway).
# The access URL stays http://127.0.0.1:3000 for the browser and CLI on this host; nothing
# listens on other interfaces. Set CODER_HTTP_ADDRESS / CODER_ACCESS_URL to override.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${CODER_CACHE_DIR:-$PWD/.cache}"
export CODER_TERRAFORM_PATH="${CODER_TERRAFORM_PATH:-$cache/bin/terraform}"
export CODER_TERRAFORM_CLI_CONFIG="${CODER_TERRAFORM_CLI_CONFIG:-$cache/terraformrc}"

port=3000
if command -v dockerd >/dev/null 2>&1 && [[ "${CODER_RUN_SKIP_DOCKER:-}" != "1" ]]; then
	bash scripts/dockerd.sh || echo "run: no Docker daemon; docker workspaces will not start" >&2
fi
if [[ -z "${CODER_HTTP_ADDRESS:-}" ]]; then
	addr="127.0.0.1:$port"
	bridge="$(ip -4 -o addr show dev docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1 || true)"
	if [[ -n "$bridge" ]]; then
		addr="$addr,$bridge:$port"
	fi
	export CODER_HTTP_ADDRESS="$addr"
fi
export CODER_ACCESS_URL="${CODER_ACCESS_URL:-http://127.0.0.1:$port}"
exec ./bin/coder server "$@"
