package pubsub_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine (listener, subscriber, pool) is
// left behind once every Pubsub was closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
