#!/usr/bin/env bash
# deps.sh — install what a fresh Debian machine lacks to build, run and test coder.
#
# Idempotent and quick when everything is present. Installs:
#   - apt packages: PostgreSQL server, OpenSSH client/server, iptables, iproute2,
#     conntrack, procps, rsync, curl, python3, chromium, ca-certificates, haproxy (the load
#     balancer of the HA tests and scripts/ha.sh), docker.io,
#     debootstrap and the build dependencies of code-server's native modules (only those
#     missing);
#   - terraform v1.8.5 and OpenTofu v1.6.3 (go install) into $CODER_CACHE_DIR/bin;
#   - Terraform providers in a filesystem mirror under $CODER_CACHE_DIR/terraform-mirror,
#     for terraform (registry.terraform.io/...) and OpenTofu (registry.opentofu.org/...):
#       coder/coder 2.20.0         go install of github.com/coder/terraform-provider-coder/v2@v2.20.0
#       kreuzwerker/docker         built from the Go module proxy's only version of
#                                  github.com/kreuzwerker/terraform-provider-docker,
#                                  v0.0.0-20260916201441-96d331c98ff4 (v4.6.0 plus the commits up
#                                  to 96d331c98ff4), labelled 4.6.0+git.20260916201441.96d331c98ff4
#       hashicorp/external 0.1.0   this repository's own implementation of the `external` data
#                                  source (tools/terraform-provider-external): HashiCorp's provider
#                                  is not served by the Go module proxy
#     plus the CLI config $CODER_CACHE_DIR/terraformrc that makes terraform/tofu use that
#     mirror (no registry access needed);
#   - a running Docker daemon (scripts/dockerd.sh) and the workspace base image
#     coder-workspace-base:bookworm (scripts/workspace-image.sh), rebuilt only when its
#     recipe changes.
#
# Every built artifact is keyed by the hash of its recipe (a .recipe file beside it, or an
# image label) and rebuilt only when that changes. CODER_CACHE_DIR defaults to <repo>/.cache.
# Run as root (CI) or as a user whose machine already has the apt packages and a Docker
# daemon; otherwise the exact command to run is printed. CODER_DEPS_SKIP_DOCKER=1 skips the
# daemon and the image (for a machine that never runs docker workspaces).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CODER_CACHE_DIR:-$REPO_DIR/.cache}"
mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
BIN_DIR="$CACHE_DIR/bin"
MIRROR_DIR="$CACHE_DIR/terraform-mirror"
TERRAFORMRC="$CACHE_DIR/terraformrc"

TERRAFORM_VERSION="1.8.5"
TOFU_VERSION="1.6.3"
PROVIDER_VERSION="2.20.0"
PROVIDER_DIR="$MIRROR_DIR/registry.terraform.io/coder/coder/$PROVIDER_VERSION/linux_amd64"
PROVIDER_BIN="$PROVIDER_DIR/terraform-provider-coder_v$PROVIDER_VERSION"
# OpenTofu resolves "coder/coder" to registry.opentofu.org: mirror the same binary there.
TOFU_PROVIDER_DIR="$MIRROR_DIR/registry.opentofu.org/coder/coder/$PROVIDER_VERSION/linux_amd64"

# kreuzwerker/docker: the module proxy has no tagged version, only this pseudo-version.
DOCKER_PROVIDER_MODULE="github.com/kreuzwerker/terraform-provider-docker"
DOCKER_PROVIDER_PSEUDO="v0.0.0-20260916201441-96d331c98ff4"
DOCKER_PROVIDER_VERSION="4.6.0+git.20260916201441.96d331c98ff4"
DOCKER_PROVIDER_DIR="$MIRROR_DIR/registry.terraform.io/kreuzwerker/docker/$DOCKER_PROVIDER_VERSION/linux_amd64"
DOCKER_PROVIDER_BIN="$DOCKER_PROVIDER_DIR/terraform-provider-docker_v$DOCKER_PROVIDER_VERSION"
# hashicorp/external: this repository's implementation (tools/terraform-provider-external).
EXTERNAL_PROVIDER_SRC="$REPO_DIR/tools/terraform-provider-external"
EXTERNAL_PROVIDER_VERSION="0.1.0"
EXTERNAL_PROVIDER_DIR="$MIRROR_DIR/registry.terraform.io/hashicorp/external/$EXTERNAL_PROVIDER_VERSION/linux_amd64"
EXTERNAL_PROVIDER_BIN="$EXTERNAL_PROVIDER_DIR/terraform-provider-external_v$EXTERNAL_PROVIDER_VERSION"
# The providers the mirror serves (terraform and OpenTofu addresses alike).
MIRRORED_PROVIDERS=(coder/coder kreuzwerker/docker hashicorp/external)

export GOTOOLCHAIN=local
export CHECKPOINT_DISABLE=1
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

step() { echo "deps: $*"; }

# --- apt packages -------------------------------------------------------------------
APT_PACKAGES=(postgresql openssh-client openssh-server iptables iproute2 conntrack procps rsync curl python3 chromium ca-certificates haproxy)
if [[ "${CODER_DEPS_SKIP_DOCKER:-}" != "1" ]]; then
	# Docker workspaces: the daemon, debootstrap for the base image, and what code-server's
	# native modules (node-gyp) need to build on this host.
	APT_PACKAGES+=(docker.io debootstrap build-essential pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev)
	command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)
fi

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
	for p in "${APT_PACKAGES[@]}"; do
		installed "$p" || missing+=("$p")
	done
else
	step "dpkg-query not found: not a Debian machine, skipping apt packages (need: ${APT_PACKAGES[*]})"
fi

if ((${#missing[@]} == 0)); then
	step "apt packages present"
else
	apt_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
	if [[ "$(id -u)" != "0" ]]; then
		echo "deps: missing apt packages: ${missing[*]}" >&2
		echo "deps: run as root: $apt_cmd" >&2
		exit 1
	fi
	step "installing apt packages: ${missing[*]}"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	step "apt packages installed"
fi

# --- Go-built tools (built in the background, in parallel) ---------------------------
if ! command -v go >/dev/null 2>&1; then
	echo "deps: go not found in PATH (need Go 1.26)" >&2
	exit 1
fi
mkdir -p "$BIN_DIR" "$PROVIDER_DIR"

# has_version BIN WANT: true when "BIN version" prints WANT on its first line.
# (The output is read whole: with pipefail, `| head -n1` could fail the check when the
# binary gets SIGPIPE, and the tool would be rebuilt for nothing.)
has_version() {
	local out
	[[ -x "$1" ]] || return 1
	out="$("$1" version 2>/dev/null)" || return 1
	[[ "${out%%$'\n'*}" == *"$2"* ]]
}

pids=()
names=()
logs=()
TMP_DIR="$(mktemp -d)"
trap 'rm -rf "$TMP_DIR"' EXIT

# go_install NAME PKG@VERSION DEST: builds into a private GOBIN and moves the binary to DEST.
go_install() {
	local name="$1" pkg="$2" dest="$3" gobin="$TMP_DIR/gobin-$1"
	mkdir -p "$gobin"
	(
		cd "$TMP_DIR"
		GOBIN="$gobin" go install "$pkg"
		local built
		built="$(find "$gobin" -maxdepth 1 -type f -perm -u+x | head -n1)"
		[[ -n "$built" ]] || { echo "no binary produced for $pkg" >&2; exit 1; }
		install -m 0755 "$built" "$dest.tmp"
		mv -f "$dest.tmp" "$dest"
	) >"$TMP_DIR/$name.log" 2>&1 &
	pids+=("$!")
	names+=("$name")
	logs+=("$TMP_DIR/$name.log")
}

if has_version "$BIN_DIR/terraform" "Terraform v$TERRAFORM_VERSION"; then
	step "terraform v$TERRAFORM_VERSION present at $BIN_DIR/terraform"
else
	step "building terraform v$TERRAFORM_VERSION (go install, takes minutes)"
	go_install terraform "github.com/hashicorp/terraform@v$TERRAFORM_VERSION" "$BIN_DIR/terraform"
fi

if has_version "$BIN_DIR/tofu" "OpenTofu v$TOFU_VERSION"; then
	step "tofu v$TOFU_VERSION present at $BIN_DIR/tofu"
else
	step "building OpenTofu v$TOFU_VERSION (go install, takes minutes)"
	go_install tofu "github.com/opentofu/opentofu/cmd/tofu@v$TOFU_VERSION" "$BIN_DIR/tofu"
fi

if [[ -x "$PROVIDER_BIN" ]]; then
	step "coder provider v$PROVIDER_VERSION present in mirror"
else
	step "building coder provider v$PROVIDER_VERSION (go install)"
	go_install provider "github.com/coder/terraform-provider-coder/v2@v$PROVIDER_VERSION" "$PROVIDER_BIN"
fi

# recipe_ok FILE HASH: true when FILE exists and FILE.recipe holds HASH.
recipe_ok() {
	[[ -x "$1" && -f "$1.recipe" ]] && [[ "$(cat "$1.recipe")" == "$2" ]]
}

# The docker provider: download the module source, build it in a writable copy.
DOCKER_PROVIDER_RECIPE="$(printf '%s\n' "$DOCKER_PROVIDER_MODULE@$DOCKER_PROVIDER_PSEUDO" "$DOCKER_PROVIDER_VERSION" "$(go env GOVERSION)" | sha256sum | cut -c1-16)"
if recipe_ok "$DOCKER_PROVIDER_BIN" "$DOCKER_PROVIDER_RECIPE"; then
	step "docker provider $DOCKER_PROVIDER_VERSION present in mirror"
else
	step "building docker provider from $DOCKER_PROVIDER_MODULE@$DOCKER_PROVIDER_PSEUDO (takes minutes)"
	mkdir -p "$DOCKER_PROVIDER_DIR"
	(
		cd "$TMP_DIR"
		src="$(go mod download -json "$DOCKER_PROVIDER_MODULE@$DOCKER_PROVIDER_PSEUDO" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
		[[ -d "$src" ]] || { echo "go mod download gave no source directory" >&2; exit 1; }
		cp -r "$src" "$TMP_DIR/docker-provider-src"
		chmod -R u+w "$TMP_DIR/docker-provider-src"
		cd "$TMP_DIR/docker-provider-src"
		go build -trimpath -ldflags "-s -w -X main.version=$DOCKER_PROVIDER_VERSION" -o "$DOCKER_PROVIDER_BIN.tmp" .
		mv -f "$DOCKER_PROVIDER_BIN.tmp" "$DOCKER_PROVIDER_BIN"
		echo "$DOCKER_PROVIDER_RECIPE" >"$DOCKER_PROVIDER_BIN.recipe"
	) >"$TMP_DIR/docker-provider.log" 2>&1 &
	pids+=("$!")
	names+=("docker provider")
	logs+=("$TMP_DIR/docker-provider.log")
fi

# The external provider, from this repository's own module.
EXTERNAL_PROVIDER_RECIPE="$( (cd "$EXTERNAL_PROVIDER_SRC" && cat go.mod go.sum ./*.go; echo "$EXTERNAL_PROVIDER_VERSION"; go env GOVERSION) | sha256sum | cut -c1-16)"
if recipe_ok "$EXTERNAL_PROVIDER_BIN" "$EXTERNAL_PROVIDER_RECIPE"; then
	step "external provider $EXTERNAL_PROVIDER_VERSION present in mirror"
else
	step "building external provider $EXTERNAL_PROVIDER_VERSION (tools/terraform-provider-external)"
	mkdir -p "$EXTERNAL_PROVIDER_DIR"
	(
		cd "$EXTERNAL_PROVIDER_SRC"
		go build -trimpath -ldflags "-s -w -X main.version=$EXTERNAL_PROVIDER_VERSION" -o "$EXTERNAL_PROVIDER_BIN.tmp" .
		mv -f "$EXTERNAL_PROVIDER_BIN.tmp" "$EXTERNAL_PROVIDER_BIN"
		echo "$EXTERNAL_PROVIDER_RECIPE" >"$EXTERNAL_PROVIDER_BIN.recipe"
	) >"$TMP_DIR/external-provider.log" 2>&1 &
	pids+=("$!")
	names+=("external provider")
	logs+=("$TMP_DIR/external-provider.log")
fi

# The Docker daemon and the workspace base image (network-bound: debootstrap and npm),
# in parallel with the builds above.
if [[ "${CODER_DEPS_SKIP_DOCKER:-}" != "1" ]]; then
	(
		bash "$REPO_DIR/scripts/dockerd.sh"
		CODER_CACHE_DIR="$CACHE_DIR" bash "$REPO_DIR/scripts/workspace-image.sh"
	) >"$TMP_DIR/workspace-image.log" 2>&1 &
	pids+=("$!")
	names+=("docker daemon and workspace image")
	logs+=("$TMP_DIR/workspace-image.log")
fi

failed=0
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		if [[ "${names[$i]}" == "docker daemon and workspace image" ]]; then
			sed 's/^/deps: /' "${logs[$i]}"
		else
			step "${names[$i]} built"
		fi
	else
		echo "deps: building ${names[$i]} failed:" >&2
		cat "${logs[$i]}" >&2
		failed=1
	fi
done
((failed == 0)) || exit 1

# OpenTofu resolves "owner/name" to registry.opentofu.org: mirror the same binaries there.
for bin in "$PROVIDER_BIN" "$DOCKER_PROVIDER_BIN" "$EXTERNAL_PROVIDER_BIN"; do
	rel="${bin#"$MIRROR_DIR/registry.terraform.io/"}"
	mkdir -p "$(dirname "$MIRROR_DIR/registry.opentofu.org/$rel")"
	ln -sfn "$bin" "$MIRROR_DIR/registry.opentofu.org/$rel"
done
# Drop mirror versions of these providers that deps.sh no longer builds (an older label).
for p in "${MIRRORED_PROVIDERS[@]}"; do
	for host in registry.terraform.io registry.opentofu.org; do
		for vdir in "$MIRROR_DIR/$host/$p"/*; do
			[[ -d "$vdir" ]] || continue
			case "$(basename "$vdir")" in
			"$PROVIDER_VERSION" | "$DOCKER_PROVIDER_VERSION" | "$EXTERNAL_PROVIDER_VERSION") ;;
			*) rm -rf "$vdir" ;;
			esac
		done
	done
done

# --- terraform CLI configuration ------------------------------------------------------
addresses=()
for p in "${MIRRORED_PROVIDERS[@]}"; do
	addresses+=("\"registry.terraform.io/$p\"" "\"registry.opentofu.org/$p\"")
done
address_list="$(IFS=,; echo "${addresses[*]}" | sed 's/,/, /g')"
rc_content="# Generated by scripts/deps.sh: serve these providers from the local filesystem mirror.
provider_installation {
  filesystem_mirror {
    path    = \"$MIRROR_DIR\"
    include = [$address_list]
  }
  direct {
    exclude = [$address_list]
  }
}"
if [[ -f "$TERRAFORMRC" ]] && [[ "$(cat "$TERRAFORMRC")" == "$rc_content" ]]; then
	step "terraformrc present at $TERRAFORMRC"
else
	printf '%s\n' "$rc_content" >"$TERRAFORMRC"
	step "wrote $TERRAFORMRC"
fi

step "done (terraform: $BIN_DIR/terraform, tofu: $BIN_DIR/tofu, TF_CLI_CONFIG_FILE=$TERRAFORMRC)"
