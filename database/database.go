package database

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultMaxConns is the size of the pool Open makes unless the URL sets
// pgx's pool_max_conns. pgx's own default, max(4, CPUs), is 4 on a small
// machine: coderd keeps one connection for its instance lock and the
// lifecycle executor holds one for its lock through a whole tick while
// its queries take others, so a handful of concurrent transactions could
// take the rest and every request then waited for a connection forever.
const DefaultMaxConns = 16

// Open connects a pgx pool to the PostgreSQL server at url and pings it
// before returning, so a returned pool is known to reach the server. The
// pool holds DefaultMaxConns connections unless url sets pool_max_conns.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping postgres at %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}
