#!/usr/bin/env bash
# dockerd.sh — make sure a Docker daemon answers (for docker workspaces and their tests).
#
# When `docker info` already answers, nothing happens. Otherwise, as root, dockerd (from
# Debian's docker.io, installed by scripts/deps.sh) is started detached with its log in
# $DOCKERD_LOG (default /var/log/coder-dockerd.log), and the script waits until `docker info`
# answers (up to 60 s). It exits non-zero when no daemon can be had.
#
# The daemon outlives this script on purpose: it is machine state like PostgreSQL. Stop it
# with `kill "$(cat /var/run/docker.pid)"`.
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/coder-dockerd.log}"

if ! command -v docker >/dev/null 2>&1; then
	echo "dockerd: no docker client in PATH (run make deps)" >&2
	exit 1
fi
if docker info >/dev/null 2>&1; then
	echo "dockerd: a Docker daemon answers"
	exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
	echo "dockerd: dockerd is not installed (run make deps: apt package docker.io)" >&2
	exit 1
fi
if [[ "$(id -u)" != "0" ]]; then
	echo "dockerd: no Docker daemon answers and starting one needs root: sudo $0" >&2
	exit 1
fi

# A pid file left by a daemon that is gone would make dockerd refuse to start.
if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
	rm -f /var/run/docker.pid
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
	mkdir -p "$(dirname "$LOG")"
	echo "dockerd: starting dockerd (log: $LOG)"
	setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 120); do
	if docker info >/dev/null 2>&1; then
		echo "dockerd: a Docker daemon answers"
		exit 0
	fi
	sleep 0.5
done
echo "dockerd: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
