#!/usr/bin/env bash
# Starts coderd for local use: embedded PostgreSQL (unless CODER_PG_CONNECTION_URL is set),
# listening on http://127.0.0.1:3000. Data lives in CODER_CONFIG_DIR (default ~/.config/coderv2).
# The built-in provisioner daemons run the terraform and provider mirror that scripts/deps.sh
# installed into CODER_CACHE_DIR (default <repo>/.cache), named explicitly through the
# environment twins of --terraform-path and --terraform-cli-config (set those to override;
# TF_CLI_CONFIG_FILE is not used here: the cache's terraformrc is what serves the providers offline).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${CODER_CACHE_DIR:-$PWD/.cache}"
export CODER_TERRAFORM_PATH="${CODER_TERRAFORM_PATH:-$cache/bin/terraform}"
export CODER_TERRAFORM_CLI_CONFIG="${CODER_TERRAFORM_CLI_CONFIG:-$cache/terraformrc}"
exec ./bin/coder server "$@"
