//go:build windows

package dbtestutil

import "errors"

// lockFile is unavailable on Windows, where the embedded test cluster is
// not supported; set CODER_TEST_POSTGRES_URL instead.
func lockFile(string) (func(), error) {
	return nil, errors.New("embedded test PostgreSQL is not supported on Windows: set " + EnvPostgresURL)
}
