// Command coder is the single binary for the server, the provisioner daemon,
// the workspace agent and the client CLI.
package main

import (
	"context"
	"os"

	"github.com/wgmesh/coder/cli"
)

func main() {
	os.Exit(cli.Main(context.Background()))
}
