package workspaceapps

import (
	"net/url"
	"testing"
	"time"
)

func TestDecisionCache(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tgt := &target{upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:8080"}}
	req := Request{Owner: "alice", Workspace: "dev", App: "code"}
	key := newDecisionKey(Credential{Kind: CredentialSession, Token: "tok"}, req, true)

	tests := []struct {
		name     string
		ttl      time.Duration
		notAfter time.Time
		at       time.Duration // lookup time after t0
		hit      bool
	}{
		{name: "fresh", ttl: 5 * time.Second, at: 4 * time.Second, hit: true},
		{name: "expires at the TTL", ttl: 5 * time.Second, at: 5 * time.Second, hit: false},
		{name: "key expiry bounds the entry", ttl: 5 * time.Second, notAfter: t0.Add(time.Second), at: time.Second, hit: false},
		{name: "key expiry after the TTL", ttl: 5 * time.Second, notAfter: t0.Add(time.Hour), at: 4 * time.Second, hit: true},
		{name: "already expired key is not cached", ttl: 5 * time.Second, notAfter: t0, at: 0, hit: false},
		{name: "disabled", ttl: -1, at: 0, hit: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newDecisionCache(tc.ttl, 0)
			c.put(key, tgt, t0, tc.notAfter)
			got := c.get(key, t0.Add(tc.at))
			if (got != nil) != tc.hit {
				t.Fatalf("hit = %v, want %v", got != nil, tc.hit)
			}
			if got != nil && got != tgt {
				t.Fatal("wrong target")
			}
		})
	}
}

func TestDecisionKeySeparatesCredentials(t *testing.T) {
	t.Parallel()
	req := Request{Owner: "alice", Workspace: "dev", App: "code"}
	base := Credential{Kind: CredentialAppKey, Token: "tok", Host: "code--main--dev--alice.apps.test:3000"}
	same := Credential{Kind: CredentialAppKey, Token: "tok", Host: "CODE--main--dev--alice.apps.test"}
	if newDecisionKey(base, req, true) != newDecisionKey(same, req, true) {
		t.Fatal("the port or case of the host changed the key")
	}
	others := map[string]Credential{
		"token":     {Kind: base.Kind, Token: "other", Host: base.Host},
		"anonymous": {Kind: base.Kind, Host: base.Host},
		"kind":      {Kind: CredentialSession, Token: base.Token, Host: base.Host},
		"host":      {Kind: base.Kind, Token: base.Token, Host: "other--main--dev--alice.apps.test"},
	}
	for name, c := range others {
		if newDecisionKey(c, req, true) == newDecisionKey(base, req, true) {
			t.Errorf("a different %s gave the same key", name)
		}
	}
	if newDecisionKey(base, req, false) == newDecisionKey(base, req, true) {
		t.Fatal("a subdomain grant would be reused for the same app by path")
	}
	if newDecisionKey(base, Request{Owner: "alice", Workspace: "dev", App: "other"}, true) == newDecisionKey(base, req, true) {
		t.Error("a different app gave the same key")
	}
}

func TestDecisionCacheBounded(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tgt := &target{}
	c := newDecisionCache(time.Second, 2)
	k := func(tok string) decisionKey {
		return newDecisionKey(Credential{Kind: CredentialSession, Token: tok}, Request{App: "a"}, true)
	}
	c.put(k("1"), tgt, t0, time.Time{})
	c.put(k("2"), tgt, t0, time.Time{})
	c.put(k("3"), tgt, t0, time.Time{}) // full of live entries: not cached
	if c.len() != 2 || c.get(k("3"), t0) != nil {
		t.Fatalf("cache grew past its bound: %d entries", c.len())
	}
	// Once the old entries expired, a put sweeps them.
	later := t0.Add(2 * time.Second)
	c.put(k("3"), tgt, later, time.Time{})
	if c.len() != 1 || c.get(k("3"), later) == nil {
		t.Fatalf("expired entries were not swept: %d entries", c.len())
	}
}
