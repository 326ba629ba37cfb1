//go:build windows

package embeddedpg

// lockOwner is a no-op on Windows, where the embedded cluster is not supported.
func lockOwner(string) (func(), error) { return func() {}, nil }
