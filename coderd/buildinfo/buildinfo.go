// Package buildinfo reports the version of the running binary.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// tag is set at link time: -ldflags "-X github.com/wgmesh/coder/coderd/buildinfo.tag=v0.1.0".
var tag string

// ExternalURL links to the project's source.
const ExternalURL = "https://github.com/wgmesh/coder"

// Version returns the binary's version: the link-time tag, else the module
// version, else "v0.0.0-devel", with "+<short commit>" when the VCS revision is known.
func Version() string {
	version := tag
	info, ok := debug.ReadBuildInfo()
	if version == "" && ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	if version == "" {
		version = "v0.0.0-devel"
	}
	if ok && !strings.Contains(version, "+") {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				version += "+" + s.Value[:7]
			}
		}
	}
	return version
}
