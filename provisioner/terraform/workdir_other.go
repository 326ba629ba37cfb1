//go:build !unix

package terraform

import "os"

// lockFile is a no-op where flock is missing: every job directory counts as
// locked, so CleanStale removes nothing.
func lockFile(*os.File) (bool, error) { return false, nil }

// killJobProcesses is a no-op without /proc.
func killJobProcesses(string) error { return nil }

// cleanDeadPluginSockets is a no-op without unix sockets.
func cleanDeadPluginSockets(string) ([]string, error) { return nil, nil }
