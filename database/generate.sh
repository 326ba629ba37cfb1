#!/usr/bin/env bash
# Regenerates the sqlc query layer in database/ from database/migrations and
# database/queries. Installs the pinned sqlc if it is not on PATH (or GOPATH/bin).
set -euo pipefail
SQLC_VERSION=v1.31.1
cd "$(dirname "$0")"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
if ! command -v sqlc >/dev/null 2>&1 || [ "$(sqlc version)" != "$SQLC_VERSION" ]; then
	echo "installing sqlc $SQLC_VERSION (cgo; this takes a few minutes)" >&2
	go install "github.com/sqlc-dev/sqlc/cmd/sqlc@$SQLC_VERSION"
fi
sqlc generate
