#!/usr/bin/env bash
# Starts coderd for local use: embedded PostgreSQL (unless CODER_PG_CONNECTION_URL is set),
# listening on http://127.0.0.1:3000. Data lives in CODER_CONFIG_DIR (default ~/.config/coderv2).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${CODER_CACHE_DIR:-$PWD/.cache}"
# Terraform and the provider mirror installed by scripts/deps.sh.
export PATH="$cache/bin:$PATH"
export TF_CLI_CONFIG_FILE="${TF_CLI_CONFIG_FILE:-$cache/terraformrc}"
exec ./bin/coder server "$@"
