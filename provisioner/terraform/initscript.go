package terraform

import (
	"fmt"
	"strings"
)

// Placeholders the Coder provider replaces in CODER_AGENT_SCRIPT_<os>_<arch> when it
// computes coder_agent.init_script.
const (
	// AccessURLPlaceholder becomes the provider's access URL (with a trailing slash).
	AccessURLPlaceholder = "${ACCESS_URL}"
	// AuthTypePlaceholder becomes the coder_agent's auth attribute (e.g. "token").
	AuthTypePlaceholder = "${AUTH_TYPE}"
)

// Platform is an operating system and architecture pair, as named by the Coder
// provider's coder_agent os and arch attributes.
type Platform struct{ OS, Arch string }

// AgentPlatforms returns the platforms the runner provides an init script for.
func AgentPlatforms() []Platform {
	return []Platform{
		{"linux", "amd64"},
		{"linux", "arm64"},
		{"linux", "armv7"},
		{"darwin", "amd64"},
		{"darwin", "arm64"},
	}
}

// AgentInitScript returns the POSIX sh script that boots a workspace agent.
// It asks coderd for the SHA-256 of <accessURL>bin/coder-<os>-<arch>
// (the .sha256 twin of that URL) and keeps one copy of the binary per hash in
// a cache directory ($CODER_AGENT_BINARY_DIR, else
// $XDG_CACHE_HOME/coder/agent, else $HOME/.cache/coder/agent, else a
// per-user directory under $TMPDIR): a start whose binary is cached
// downloads nothing, a changed binary is downloaded (curl, wget or busybox
// wget, retrying with backoff), checked against the hash when sha256sum is
// there, and moved into place atomically, and copies of other hashes are
// removed. It then execs "coder agent" with CODER_AGENT_AUTH and
// CODER_AGENT_URL set. The agent token is expected in CODER_AGENT_TOKEN,
// provided by the template.
//
// An empty accessURL keeps the ${ACCESS_URL} placeholder so that the Coder provider
// substitutes its own URL; the ${AUTH_TYPE} placeholder is always left for the provider.
func AgentInitScript(goos, arch, accessURL string) string {
	if accessURL != "" && !strings.HasSuffix(accessURL, "/") {
		accessURL += "/"
	}
	url := AccessURLPlaceholder
	if accessURL != "" {
		url = accessURL
	}
	script := fmt.Sprintf(initScriptTemplate, url, goos, arch, AuthTypePlaceholder, url)
	return script
}

// initScriptTemplate arguments: access URL, os, arch, auth type, access URL.
// (The Coder provider substitutes ${ACCESS_URL} and ${AUTH_TYPE} only: the
// script's own variables are written $name, never ${name} with a plain name
// that could collide.)
const initScriptTemplate = `#!/bin/sh
# Coder agent init script: fetch the agent binary from coderd (once per
# version, cached by hash) and run it.
set -eu
access_url='%s'
binary_url="${access_url}bin/coder-%s-%s"
agent_auth='%s'
cache_dir="${CODER_AGENT_BINARY_DIR:-}"
if [ -z "$cache_dir" ]; then
	if [ -n "${XDG_CACHE_HOME:-}" ]; then
		cache_dir="$XDG_CACHE_HOME/coder/agent"
	elif [ -n "${HOME:-}" ]; then
		cache_dir="$HOME/.cache/coder/agent"
	else
		cache_dir="${TMPDIR:-/tmp}/coder-agent-$(id -u)"
	fi
fi
mkdir -p "$cache_dir"
if ! command -v curl >/dev/null 2>&1 && ! command -v wget >/dev/null 2>&1 && ! command -v busybox >/dev/null 2>&1; then
	echo "coder init: no download tool found (need curl, wget or busybox)" >&2
	exit 1
fi
fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --compressed "$1" -o "$2"
	elif command -v wget >/dev/null 2>&1; then
		wget -q "$1" -O "$2"
	else
		busybox wget -q "$1" -O "$2"
	fi
}
delay=1
while :; do
	hash=""
	if fetch "$binary_url.sha256" "$cache_dir/.hash.$$" 2>/dev/null; then
		hash="$(tr -dc '0-9a-f' <"$cache_dir/.hash.$$")"
	fi
	rm -f "$cache_dir/.hash.$$"
	if [ "${#hash}" -eq 64 ]; then
		binary_path="$cache_dir/$hash/coder"
		if [ -x "$binary_path" ]; then
			break
		fi
		mkdir -p "$cache_dir/$hash"
		tmp="$cache_dir/$hash/coder.tmp.$$"
		if fetch "$binary_url" "$tmp"; then
			got="$hash"
			if command -v sha256sum >/dev/null 2>&1; then
				got="$(sha256sum "$tmp" | cut -d' ' -f1)"
			fi
			if [ "$got" = "$hash" ]; then
				chmod +x "$tmp"
				mv -f "$tmp" "$binary_path"
				break
			fi
			echo "coder init: downloaded binary does not match its hash (coderd upgraded meanwhile?)" >&2
		fi
		rm -f "$tmp"
	fi
	echo "coder init: downloading $binary_url failed, retrying in ${delay}s" >&2
	sleep "$delay"
	if [ "$delay" -lt 30 ]; then
		delay=$((delay * 2))
	fi
done
# Copies of other versions are stale (a running agent keeps its unlinked file).
for old in "$cache_dir"/*; do
	name="${old##*/}"
	if [ "$name" != "$hash" ] && [ "${#name}" -eq 64 ] && [ -d "$old" ]; then
		case "$name" in
		*[!0-9a-f]*) ;;
		*) rm -rf "$old" ;;
		esac
	fi
done
export CODER_AGENT_AUTH="$agent_auth"
export CODER_AGENT_URL='%s'
exec "$binary_path" agent
`
