#!/usr/bin/env bash
# deps.sh — install what a fresh Debian machine lacks to build, run and test coder.
#
# Idempotent and quick when everything is present. Installs:
#   - apt packages: PostgreSQL server, OpenSSH client/server, iptables, iproute2,
#     conntrack, procps, rsync, curl, python3, chromium, ca-certificates (only those missing);
#   - terraform v1.8.5 and OpenTofu v1.6.3 (go install) into $CODER_CACHE_DIR/bin;
#   - the Coder Terraform provider v2.20.0 (go install) into a filesystem mirror under
#     $CODER_CACHE_DIR/terraform-mirror, plus the CLI config $CODER_CACHE_DIR/terraformrc
#     that makes terraform/tofu use that mirror (no registry access needed).
#
# CODER_CACHE_DIR defaults to <repo>/.cache. Run as root (CI) or as a user whose machine
# already has the apt packages; otherwise the exact apt command to run is printed.
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

export GOTOOLCHAIN=local
export CHECKPOINT_DISABLE=1
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

step() { echo "deps: $*"; }

# --- apt packages -------------------------------------------------------------------
APT_PACKAGES=(postgresql openssh-client openssh-server iptables iproute2 conntrack procps rsync curl python3 chromium ca-certificates)

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
has_version() {
	[[ -x "$1" ]] && "$1" version 2>/dev/null | head -n1 | grep -qF "$2"
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

failed=0
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		step "${names[$i]} built"
	else
		echo "deps: building ${names[$i]} failed:" >&2
		cat "${logs[$i]}" >&2
		failed=1
	fi
done
((failed == 0)) || exit 1

mkdir -p "$TOFU_PROVIDER_DIR"
ln -sf "$PROVIDER_BIN" "$TOFU_PROVIDER_DIR/terraform-provider-coder_v$PROVIDER_VERSION"

# --- terraform CLI configuration ------------------------------------------------------
rc_content="# Generated by scripts/deps.sh: serve coder/coder from the local filesystem mirror.
provider_installation {
  filesystem_mirror {
    path    = \"$MIRROR_DIR\"
    include = [\"registry.terraform.io/coder/coder\", \"registry.opentofu.org/coder/coder\"]
  }
  direct {
    exclude = [\"registry.terraform.io/coder/coder\", \"registry.opentofu.org/coder/coder\"]
  }
}"
if [[ -f "$TERRAFORMRC" ]] && [[ "$(cat "$TERRAFORMRC")" == "$rc_content" ]]; then
	step "terraformrc present at $TERRAFORMRC"
else
	printf '%s\n' "$rc_content" >"$TERRAFORMRC"
	step "wrote $TERRAFORMRC"
fi

step "done (terraform: $BIN_DIR/terraform, tofu: $BIN_DIR/tofu, TF_CLI_CONFIG_FILE=$TERRAFORMRC)"
