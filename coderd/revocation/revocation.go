// Package revocation ends live sessions when the access they rest on is
// revoked: an API key deleted, a user suspended or deleted, a workspace
// stopped or deleted.
//
// coderd registers every long-lived connection it serves (coordination
// websockets of clients and agents, web terminals, workspace app
// connections) with the API key, user and workspace that authorized it,
// and a function that ends it. Revoke ends the matching sessions of this
// replica at once and publishes the event on the deployment's PostgreSQL
// pubsub, so every other replica ends its matching sessions as soon as the
// notification arrives. New requests are refused by authentication and
// authorization themselves (the key is gone, the user is suspended, the
// workspace is stopped); this package only reaches what was already open.
package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/database/pubsub"
)

// PubsubEvent is the pubsub channel revocations are published on.
const PubsubEvent = "coder_revocations"

// RecentWindow is how long a revocation is remembered, for sessions that
// authenticated before it but register after it (see Register). A request
// takes far less from authentication to registration.
const RecentWindow = time.Minute

// Kind is what a revocation names.
type Kind string

// Kinds of revocation.
const (
	// KindAPIKey: one API key (its ID) was deleted.
	KindAPIKey Kind = "api_key"
	// KindUser: a user (its ID) was suspended or deleted.
	KindUser Kind = "user"
	// KindWorkspace: a workspace (its ID) is being stopped or deleted:
	// users' sessions reaching it end.
	KindWorkspace Kind = "workspace"
	// KindWorkspaceAgents: a workspace's stop or delete completed, its
	// agents' tokens stopped working: the agents' own sessions end.
	KindWorkspaceAgents Kind = "workspace_agents"
)

// Event is one revocation.
type Event struct {
	Kind Kind   `json:"kind"`
	ID   string `json:"id"`
}

// APIKey is the revocation of an API key.
func APIKey(id string) Event { return Event{Kind: KindAPIKey, ID: id} }

// User is the revocation of a user's access.
func User(id uuid.UUID) Event { return Event{Kind: KindUser, ID: id.String()} }

// Workspace is the revocation of users' access to a workspace.
func Workspace(id uuid.UUID) Event { return Event{Kind: KindWorkspace, ID: id.String()} }

// WorkspaceAgents is the revocation of a workspace's agents' sessions.
func WorkspaceAgents(id uuid.UUID) Event { return Event{Kind: KindWorkspaceAgents, ID: id.String()} }

func (e Event) valid() error {
	switch e.Kind {
	case KindAPIKey:
		if e.ID == "" {
			return errors.New("api key revocation without an ID")
		}
	case KindUser, KindWorkspace, KindWorkspaceAgents:
		if _, err := uuid.Parse(e.ID); err != nil {
			return fmt.Errorf("%s revocation: ID %q: %w", e.Kind, e.ID, err)
		}
	default:
		return fmt.Errorf("unknown revocation kind %q", e.Kind)
	}
	return nil
}

// Session is what authorized one live connection. Zero fields match
// nothing (an agent's session has no API key or user).
type Session struct {
	// Kind labels the connection in logs ("client coordinate", "terminal",
	// "agent coordinate", "app").
	Kind string
	// APIKeyID is the ID of the API key the connection authenticated with.
	APIKeyID string
	// UserID is the user the connection acts for.
	UserID uuid.UUID
	// WorkspaceID is the workspace the connection reaches (or, for an
	// agent, runs in).
	WorkspaceID uuid.UUID
	// Agent marks a workspace agent's own session (KindWorkspaceAgents
	// ends it, KindWorkspace does not: an agent stays connected while its
	// workspace stops, so that it hears its clients being removed).
	Agent bool
}

// Matches reports whether e revokes s.
func (s Session) Matches(e Event) bool {
	switch e.Kind {
	case KindAPIKey:
		return s.APIKeyID != "" && s.APIKeyID == e.ID
	case KindUser:
		return s.UserID != uuid.Nil && s.UserID.String() == e.ID
	case KindWorkspace:
		return !s.Agent && s.WorkspaceID != uuid.Nil && s.WorkspaceID.String() == e.ID
	case KindWorkspaceAgents:
		return s.Agent && s.WorkspaceID != uuid.Nil && s.WorkspaceID.String() == e.ID
	}
	return false
}

// Options configures New.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Pubsub carries revocations between replicas; nil keeps them local
	// (a single coderd).
	Pubsub *pubsub.Pubsub
	// Recheck, when set, is asked about every live session after the
	// pubsub may have dropped messages (its listener reconnected or its
	// queue overflowed): sessions it reports as no longer allowed are
	// ended. coderd checks the database.
	Recheck func(ctx context.Context, s Session) (allowed bool, err error)
	// Now is the clock of RecentWindow; nil means time.Now.
	Now func() time.Time
}

// Registry tracks the live sessions of one coderd replica.
type Registry struct {
	logger  *slog.Logger
	ps      *pubsub.Pubsub
	recheck func(ctx context.Context, s Session) (bool, error)
	now     func() time.Time

	ctx         context.Context
	cancel      context.CancelFunc
	unsubscribe func()
	wg          sync.WaitGroup

	mu       sync.Mutex
	sessions map[*entry]struct{}
	recent   []recentEvent
}

type entry struct {
	s    Session
	end  func()
	once sync.Once
}

type recentEvent struct {
	ev Event
	at time.Time
}

// New returns a Registry, subscribed to opts.Pubsub when set. Close it.
func New(opts Options) (*Registry, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		logger:   opts.Logger.With("component", "revocation"),
		ps:       opts.Pubsub,
		recheck:  opts.Recheck,
		now:      opts.Now,
		ctx:      ctx,
		cancel:   cancel,
		sessions: map[*entry]struct{}{},
	}
	if r.ps != nil {
		unsub, err := r.ps.SubscribeWithErr(PubsubEvent, r.onMessage)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("subscribe to revocations: %w", err)
		}
		r.unsubscribe = unsub
	}
	return r, nil
}

// Close stops listening for revocations. Registered sessions are left as
// they are (their owners end them).
func (r *Registry) Close() {
	if r.unsubscribe != nil {
		r.unsubscribe()
	}
	r.cancel()
	r.wg.Wait()
}

// Register tracks a live session until the returned function is called
// (when the connection ends). end is called at most once, when a
// revocation covers s, and must not block for long. since is when the
// session's credentials were checked (Now's clock): a revocation this
// registry received after since (within RecentWindow) that covers s ends
// it at once, since the check may have read the database before the
// revoking change; one received before since does not (the check saw the
// change: a user reactivated after a suspension connects again).
func (r *Registry) Register(s Session, since time.Time, end func()) (unregister func()) {
	e := &entry{s: s, end: end}
	r.mu.Lock()
	var hit *Event
	now := r.now()
	for _, re := range r.recent {
		if now.Sub(re.at) <= RecentWindow && !re.at.Before(since) && s.Matches(re.ev) {
			hit = &re.ev
			break
		}
	}
	if hit == nil {
		r.sessions[e] = struct{}{}
	}
	r.mu.Unlock()
	if hit != nil {
		r.endSession(e, *hit)
		return func() {}
	}
	return func() {
		r.mu.Lock()
		delete(r.sessions, e)
		r.mu.Unlock()
	}
}

// Len is the number of registered sessions.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Revoke ends the local sessions e covers and, with a pubsub, publishes e
// to the other replicas. The local sessions are ended even when
// publishing fails (the error says so).
func (r *Registry) Revoke(ctx context.Context, e Event) error {
	if err := e.valid(); err != nil {
		return err
	}
	r.apply(e)
	if r.ps == nil {
		return nil
	}
	msg, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode revocation: %w", err)
	}
	if err := r.ps.PublishContext(ctx, PubsubEvent, msg); err != nil {
		return fmt.Errorf("publish revocation of %s %s: %w", e.Kind, e.ID, err)
	}
	return nil
}

// onMessage applies a revocation published by any replica (this one too:
// applying twice is harmless).
func (r *Registry) onMessage(ctx context.Context, msg []byte, err error) {
	if err != nil {
		if errors.Is(err, pubsub.ErrDroppedMessages) {
			r.logger.Warn("revocations may have been missed; rechecking live sessions", "error", err)
			r.recheckAll()
		}
		return
	}
	var e Event
	if err := json.Unmarshal(msg, &e); err != nil {
		r.logger.Warn("ignoring undecodable revocation", "error", err)
		return
	}
	if err := e.valid(); err != nil {
		r.logger.Warn("ignoring invalid revocation", "error", err)
		return
	}
	r.apply(e)
}

// apply remembers e and ends the sessions it covers.
func (r *Registry) apply(e Event) {
	now := r.now()
	var victims []*entry
	r.mu.Lock()
	kept := r.recent[:0]
	for _, re := range r.recent {
		if now.Sub(re.at) <= RecentWindow {
			kept = append(kept, re)
		}
	}
	r.recent = append(kept, recentEvent{ev: e, at: now})
	for s := range r.sessions {
		if s.s.Matches(e) {
			victims = append(victims, s)
			delete(r.sessions, s)
		}
	}
	r.mu.Unlock()
	for _, v := range victims {
		r.endSession(v, e)
	}
}

func (r *Registry) endSession(e *entry, why Event) {
	e.once.Do(func() {
		r.logger.Info("ending revoked session", "session", e.s.Kind, "user_id", e.s.UserID,
			"workspace_id", e.s.WorkspaceID, "revoked", why.Kind, "id", why.ID)
		e.end()
	})
}

// recheckAll asks Recheck about every live session, in the background.
func (r *Registry) recheckAll() {
	if r.recheck == nil {
		return
	}
	r.mu.Lock()
	all := make([]*entry, 0, len(r.sessions))
	for e := range r.sessions {
		all = append(all, e)
	}
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for _, e := range all {
			ok, err := r.recheck(r.ctx, e.s)
			if err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.logger.Warn("recheck session", "session", e.s.Kind, "error", err)
				continue
			}
			if ok {
				continue
			}
			r.mu.Lock()
			_, live := r.sessions[e]
			delete(r.sessions, e)
			r.mu.Unlock()
			if live {
				r.endSession(e, Event{Kind: "recheck"})
			}
		}
	}()
}
