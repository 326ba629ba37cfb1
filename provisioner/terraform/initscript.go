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

// AgentInitScript returns the POSIX sh script that boots a workspace agent: it
// downloads <accessURL>bin/coder-<os>-<arch> (curl, wget or busybox wget, retrying with
// backoff until it succeeds), checks it is executable and execs "coder agent" with
// CODER_AGENT_AUTH and CODER_AGENT_URL set. The agent token is expected in
// CODER_AGENT_TOKEN, provided by the template.
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
const initScriptTemplate = `#!/bin/sh
# Coder agent init script: fetch the agent binary from coderd and run it.
set -eu
access_url='%s'
binary_url="${access_url}bin/coder-%s-%s"
agent_auth='%s'
binary_dir="${CODER_AGENT_BINARY_DIR:-}"
if [ -z "$binary_dir" ]; then
	binary_dir="$(mktemp -d "${TMPDIR:-/tmp}/coder.XXXXXX")"
fi
mkdir -p "$binary_dir"
binary_path="$binary_dir/coder"
delay=1
while :; do
	ok=0
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --compressed "$binary_url" -o "$binary_path.tmp" && ok=1
	elif command -v wget >/dev/null 2>&1; then
		wget -q "$binary_url" -O "$binary_path.tmp" && ok=1
	elif command -v busybox >/dev/null 2>&1; then
		busybox wget -q "$binary_url" -O "$binary_path.tmp" && ok=1
	else
		echo "coder init: no download tool found (need curl, wget or busybox)" >&2
		exit 1
	fi
	if [ "$ok" = 1 ]; then
		break
	fi
	echo "coder init: downloading $binary_url failed, retrying in ${delay}s" >&2
	sleep "$delay"
	if [ "$delay" -lt 30 ]; then
		delay=$((delay * 2))
	fi
done
chmod +x "$binary_path.tmp"
mv -f "$binary_path.tmp" "$binary_path"
if [ ! -x "$binary_path" ]; then
	echo "coder init: $binary_path is not executable" >&2
	exit 1
fi
export CODER_AGENT_AUTH="$agent_auth"
export CODER_AGENT_URL='%s'
exec "$binary_path" agent
`
