// Package examples embeds the ready-made templates under templates/, for
// `coder templates init`.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed templates/local templates/docker
var templates embed.FS

// Template returns the files of the named example template (e.g. "local").
func Template(name string) (fs.FS, error) {
	return fs.Sub(templates, "templates/"+name)
}
