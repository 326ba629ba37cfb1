//go:build unix && !linux

package terraform

// killJobProcesses is a no-op without /proc: terraform-exec still stops
// terraform itself when a job is canceled.
func killJobProcesses(string) error { return nil }
