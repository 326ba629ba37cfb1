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

# alive PID: the process exists and is not a zombie (a killed daemon whose parent does not
# reap it stays a zombie, which kill -0 and pgrep still see).
alive() {
	local state
	state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
	[[ -n "$state" && "$state" != Z ]]
}
running=""
if [[ -f /var/run/docker.pid ]]; then
	pid="$(cat /var/run/docker.pid)"
	if [[ -n "$pid" ]] && alive "$pid"; then
		running="$pid"
	else
		# A pid file left by a daemon that is gone would make dockerd refuse to start.
		rm -f /var/run/docker.pid
	fi
fi
if [[ -z "$running" ]]; then
	# The same for the containerd that dockerd manages: dockerd would wait for a dead one.
	cpid_file=/var/run/docker/containerd/containerd.pid
	if [[ -f "$cpid_file" ]] && ! alive "$(cat "$cpid_file")"; then
		rm -f "$cpid_file" /var/run/docker/containerd/containerd.sock /var/run/docker/containerd/containerd.sock.ttrpc
	fi
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
