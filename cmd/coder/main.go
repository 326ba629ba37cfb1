// Command coder is the single binary for the server, the provisioner daemon,
// the workspace agent and the client CLI.
package main

func main() {}
