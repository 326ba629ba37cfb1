#!/usr/bin/env bash
# Build the NAT lab by hand for debugging: the same closed topology the natlab
# tests build (the Go package natlab is the source of truth; this runs its
# small natlab/cmd/natlab tool). Needs root, iproute2, iptables, conntrack.
#
#   scripts/natlab.sh up VARIANT      e.g. easy+hard, easy+udp-blocked, easyaf+hard
#   scripts/natlab.sh status VARIANT  namespaces, addresses, NAT rules
#   scripts/natlab.sh down VARIANT
#
# VARIANT: the NAT kind of each site joined by "+" (easy, easyaf, hard, udp-blocked).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -ne 2 ]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
export GOTOOLCHAIN=local
exec go run ./natlab/cmd/natlab "$1" "$2"
