package coordinator_test

import (
	"context"
	"testing"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/coordinator/pgcoord"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
)

// coordImpl is one Coordinator implementation the contract tests run
// against. new honours QueueSize and LostTimeout.
type coordImpl struct {
	name string
	new  func(t *testing.T, opts coordinator.InMemoryOptions) coordinator.Coordinator
}

var coordImpls = []coordImpl{
	{"inmemory", func(_ *testing.T, opts coordinator.InMemoryOptions) coordinator.Coordinator {
		return coordinator.NewInMemoryWithOptions(opts)
	}},
	{"postgres", newPGCoordinator},
}

// newPGCoordinator is a PostgreSQL coordinator on a fresh database, closed
// (before its pubsub and pool) when the test ends.
func newPGCoordinator(t *testing.T, opts coordinator.InMemoryOptions) coordinator.Coordinator {
	t.Helper()
	ctx := context.Background()
	pool := dbtestutil.NewPool(t)
	ps, err := pubsub.New(ctx, nil, pool, pubsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	c, err := pgcoord.New(ctx, pool, ps, pgcoord.Options{QueueSize: opts.QueueSize, LostTimeout: opts.LostTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eachImpl runs fn as a subtest per implementation.
func eachImpl(t *testing.T, fn func(t *testing.T, impl coordImpl)) {
	for _, impl := range coordImpls {
		t.Run(impl.name, func(t *testing.T) { fn(t, impl) })
	}
}
