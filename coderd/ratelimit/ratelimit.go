// Package ratelimit counts events per key in fixed windows on an injected
// clock, for limits such as login attempts per client address and per
// account.
package ratelimit

import (
	"sync"
	"time"
)

// maxKeys bounds the keys a Limiter remembers; past it, expired windows are
// swept (and, when none expired, the oldest window goes).
const maxKeys = 100_000

// Limiter allows at most Limit events per key in each Window.
type Limiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*bucket
}

type bucket struct {
	start time.Time
	count int
}

// New returns a limiter of limit events per window per key, reading the
// time from now (time.Now when nil).
func New(limit int, window time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{limit: limit, window: window, now: now, keys: map[string]*bucket{}}
}

// Check reports whether key may have another event; when it may not, it
// also returns how long until its window ends. It does not count an event.
func (l *Limiter) Check(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.current(key, now)
	if b == nil || b.count < l.limit {
		return true, 0
	}
	return false, b.start.Add(l.window).Sub(now)
}

// Add counts an event for key.
func (l *Limiter) Add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.current(key, now)
	if b == nil {
		if len(l.keys) >= maxKeys {
			l.sweep(now)
		}
		b = &bucket{start: now}
		l.keys[key] = b
	}
	b.count++
}

// Allow is Check followed, when allowed, by Add.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.current(key, now)
	if b == nil {
		if len(l.keys) >= maxKeys {
			l.sweep(now)
		}
		b = &bucket{start: now}
		l.keys[key] = b
	}
	if b.count >= l.limit {
		return false, b.start.Add(l.window).Sub(now)
	}
	b.count++
	return true, 0
}

// Reset forgets key's events.
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// current returns key's bucket if its window is still open. Callers hold mu.
func (l *Limiter) current(key string, now time.Time) *bucket {
	b := l.keys[key]
	if b == nil {
		return nil
	}
	if !now.Before(b.start.Add(l.window)) {
		delete(l.keys, key)
		return nil
	}
	return b
}

// sweep drops expired windows, or the oldest one when none expired.
// Callers hold mu.
func (l *Limiter) sweep(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, b := range l.keys {
		if !now.Before(b.start.Add(l.window)) {
			delete(l.keys, k)
			continue
		}
		if oldestKey == "" || b.start.Before(oldest) {
			oldestKey, oldest = k, b.start
		}
	}
	if len(l.keys) >= maxKeys && oldestKey != "" {
		delete(l.keys, oldestKey)
	}
}
