package coderd

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLoginHashSlots holds every hashing slot and shows that a further
// comparison does not run until one frees, and gives up with its context.
func TestLoginHashSlots(t *testing.T) {
	t.Parallel()
	l := newLoginLimits(LoginLimitOptions{MaxConcurrentHashes: 2}, time.Now)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			done <- l.hash(context.Background(), func() {
				started <- struct{}{}
				<-release
			})
		}()
	}
	<-started
	<-started

	// Both slots are taken: a comparison whose client gives up never runs.
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	waited := make(chan error, 1)
	go func() { waited <- l.hash(ctx, func() { ran = true }) }()
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("hash with every slot taken: err %v, ran %v", err, ran)
	}

	// One waiting for a slot runs as soon as one frees.
	third := make(chan struct{})
	go func() { _ = l.hash(context.Background(), func() { close(third) }) }()
	select {
	case <-third:
		t.Fatal("a third comparison ran while two held the slots")
	default:
	}
	close(release)
	<-third
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
