package workspaceapps

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"
)

// DefaultAuthCacheTTL is how long a granted app request is remembered.
// It is the staleness bound of the proxy's authorization: a suspended or
// deleted user, a revoked key, a stopped workspace, a changed share level
// or an app that turned unhealthy takes effect on requests within this
// long. Denials are never cached.
const DefaultAuthCacheTTL = 5 * time.Second

// DefaultAuthCacheSize bounds the number of remembered decisions.
const DefaultAuthCacheSize = 10000

// decisionKey identifies a cached decision: a hash of the credential (the
// token itself is never kept in memory longer than the request) and the
// app the request names.
type decisionKey struct {
	cred [sha256.Size]byte
	req  Request
	path bool
}

func newDecisionKey(c Credential, req Request, path bool) decisionKey {
	h := sha256.New()
	h.Write([]byte(c.Kind))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(hostOnly(c.Host))))
	h.Write([]byte{0})
	h.Write([]byte(c.Token))
	var k decisionKey
	h.Sum(k.cred[:0])
	k.req, k.path = req, path
	return k
}

type decision struct {
	target  *target
	expires time.Time
}

// decisionCache remembers granted app requests (the Grant and its parsed
// upstream) until they expire. Entries expire on time only; there is
// no invalidation. It holds at most max entries: when full, expired
// entries are swept, and if it is still full the new decision is not
// remembered. It starts no goroutine.
type decisionCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[decisionKey]decision
}

// newDecisionCache returns a cache; ttl <= 0 disables it.
func newDecisionCache(ttl time.Duration, maxEntries int) *decisionCache {
	if maxEntries <= 0 {
		maxEntries = DefaultAuthCacheSize
	}
	return &decisionCache{ttl: ttl, max: maxEntries, entries: map[decisionKey]decision{}}
}

// get returns the granted target for k if it has not expired at now.
func (c *decisionCache) get(k decisionKey, now time.Time) *target {
	if c.ttl <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.entries[k]
	if !ok {
		return nil
	}
	if !now.Before(d.expires) {
		delete(c.entries, k)
		return nil
	}
	return d.target
}

// put remembers a granted target from now until now+ttl, or until
// notAfter when that is earlier (the grant's expiry: that of the key that
// was used).
func (c *decisionCache) put(k decisionKey, t *target, now, notAfter time.Time) {
	if c.ttl <= 0 {
		return
	}
	expires := now.Add(c.ttl)
	if !notAfter.IsZero() && notAfter.Before(expires) {
		expires = notAfter
	}
	if !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for ek, d := range c.entries {
			if !now.Before(d.expires) {
				delete(c.entries, ek)
			}
		}
		if len(c.entries) >= c.max {
			return
		}
	}
	c.entries[k] = decision{target: t, expires: expires}
}

// clear forgets every decision.
func (c *decisionCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

// len returns the number of entries (expired or not).
func (c *decisionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// bufferPool recycles the reverse proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}}
}

// Get returns a 32 KiB buffer.
func (b *bufferPool) Get() []byte { return *b.p.Get().(*[]byte) }

// Put returns a buffer to the pool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < 32*1024 {
		return
	}
	buf = buf[:32*1024]
	b.p.Put(&buf)
}
