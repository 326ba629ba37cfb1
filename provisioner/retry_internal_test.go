package provisioner

import (
	"testing"
	"time"
)

// TestRetryDelayBacksOff: a daemon whose calls keep failing (coderd up, its
// database down) waits longer after each failure, up to the cap, instead of
// retrying (and logging) every second.
func TestRetryDelayBacksOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		d       Daemon
		attempt int
		step    time.Duration // un-jittered; the wait is in [step/2, step]
	}{
		{"defaults, first failure", Daemon{}, 1, time.Second},
		{"defaults, second failure", Daemon{}, 2, 2 * time.Second},
		{"defaults, fourth failure", Daemon{}, 4, 8 * time.Second},
		{"defaults, capped", Daemon{}, 30, 10 * time.Second},
		{"configured", Daemon{RetryInterval: 100 * time.Millisecond, MaxRetryInterval: time.Second}, 3, 400 * time.Millisecond},
		{"configured, capped", Daemon{RetryInterval: 100 * time.Millisecond, MaxRetryInterval: time.Second}, 10, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for i := 0; i < 100; i++ {
				if d := tc.d.retryDelay(tc.attempt); d < tc.step/2 || d > tc.step {
					t.Fatalf("attempt %d: wait %v, want within [%v, %v]", tc.attempt, d, tc.step/2, tc.step)
				}
			}
		})
	}
}
