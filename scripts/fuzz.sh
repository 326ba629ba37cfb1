#!/usr/bin/env bash
# Runs every Go fuzz target for FUZZTIME each (go test can fuzz only one
# target per invocation). `make fuzz` calls it; `make test` (plain go test)
# already runs each target's committed seed corpus (testdata/fuzz/FuzzXxx/).
#
#   FUZZTIME=2m FUZZPARALLEL=1 scripts/fuzz.sh            # all targets
#   scripts/fuzz.sh ./coordinator FuzzServeWebsocket       # one target
#
# New crashers land in the package's testdata/fuzz/FuzzXxx/ directory: fix
# the bug and commit the file as a regression seed.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-30s}
FUZZPARALLEL=${FUZZPARALLEL:-1}

# package target
TARGETS=(
	"./coordinator FuzzServeWebsocket"
	"./provisioner/templatearchive FuzzExtract"
	"./provisioner/templatearchive FuzzExtractEntries"
	"./provisioner/terraform FuzzConvertState"
	"./coderd FuzzAPIRequestBodies"
	"./coderd/workspaceapps FuzzSubdomainHost"
	"./coderd/workspaceapps FuzzPathApp"
)

if [[ $# -eq 2 ]]; then
	TARGETS=("$1 $2")
elif [[ $# -ne 0 ]]; then
	echo "usage: $0 [package target]" >&2
	exit 2
fi

failed=()
for entry in "${TARGETS[@]}"; do
	read -r pkg target <<<"$entry"
	echo "== $pkg $target ($FUZZTIME)"
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZPARALLEL" -timeout 0 "$pkg"; then
		failed+=("$pkg $target")
	fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
	printf 'fuzz target failed: %s\n' "${failed[@]}" >&2
	exit 1
fi
