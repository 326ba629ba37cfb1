package coderd

import (
	"context"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/ratelimit"
	"github.com/wgmesh/coder/codersdk"
)

// Defaults of LoginLimitOptions.
const (
	DefaultLoginAttemptsPerIP      = 30
	DefaultLoginFailuresPerAccount = 10
	DefaultLoginLimitWindow        = time.Minute
)

// LoginLimitOptions bounds password logins (POST /api/v2/users/login).
// Zero values take the defaults.
type LoginLimitOptions struct {
	// AttemptsPerIP bounds login attempts from one client address per
	// Window (default 30).
	AttemptsPerIP int
	// FailuresPerAccount bounds failed logins to one email per Window
	// (default 10), wherever they come from; a success clears the count.
	FailuresPerAccount int
	// Window is the counting window (default one minute).
	Window time.Duration
	// MaxConcurrentHashes bounds the bcrypt comparisons running at once
	// (default GOMAXPROCS); further logins wait for a slot.
	MaxConcurrentHashes int
}

// loginLimits holds the login limiters and the hashing semaphore.
type loginLimits struct {
	perIP      *ratelimit.Limiter
	perAccount *ratelimit.Limiter
	hashSlots  chan struct{}
}

func newLoginLimits(opts LoginLimitOptions, now func() time.Time) *loginLimits {
	if opts.AttemptsPerIP <= 0 {
		opts.AttemptsPerIP = DefaultLoginAttemptsPerIP
	}
	if opts.FailuresPerAccount <= 0 {
		opts.FailuresPerAccount = DefaultLoginFailuresPerAccount
	}
	if opts.Window <= 0 {
		opts.Window = DefaultLoginLimitWindow
	}
	if opts.MaxConcurrentHashes <= 0 {
		opts.MaxConcurrentHashes = runtime.GOMAXPROCS(0)
	}
	return &loginLimits{
		perIP:      ratelimit.New(opts.AttemptsPerIP, opts.Window, now),
		perAccount: ratelimit.New(opts.FailuresPerAccount, opts.Window, now),
		hashSlots:  make(chan struct{}, opts.MaxConcurrentHashes),
	}
}

// clientIP is the rate-limit key of r's client: the connection's address
// (forwarding headers are not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// accountKey is the rate-limit key of a login's account.
func accountKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// admit counts a login attempt from r for email and reports whether it may
// proceed; when not, it has written 429 with Retry-After.
func (l *loginLimits) admit(w http.ResponseWriter, r *http.Request, email string) bool {
	if ok, wait := l.perAccount.Check(accountKey(email)); !ok {
		tooManyLogins(w, r, wait, "Too many failed logins for this account.")
		return false
	}
	if ok, wait := l.perIP.Allow(clientIP(r)); !ok {
		tooManyLogins(w, r, wait, "Too many login attempts from your address.")
		return false
	}
	return true
}

// hash runs compare in a hashing slot, waiting for one until ctx ends.
func (l *loginLimits) hash(ctx context.Context, compare func()) error {
	select {
	case l.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.hashSlots }()
	compare()
	return nil
}

func tooManyLogins(w http.ResponseWriter, r *http.Request, wait time.Duration, message string) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	httpapi.Write(r.Context(), w, http.StatusTooManyRequests, codersdk.Response{
		Message: message,
		Detail:  "Try again in " + strconv.Itoa(secs) + " seconds.",
	})
}
