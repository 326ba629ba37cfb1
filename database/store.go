package database

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTxAttempts is how many times Store.InTx runs a transaction that
// keeps failing with a serialization failure or deadlock.
const DefaultTxAttempts = 5

// txRetryBase is the first pause before a retried transaction; each further
// retry doubles it (with jitter). Retrying at once tends to collide again with
// the transaction that won, which may not have committed yet.
const txRetryBase = 10 * time.Millisecond

// Store is the database handle coderd uses: every generated query (through
// the embedded *Queries, running on the pool) plus transactions.
type Store struct {
	*Queries
	pool *pgxpool.Pool
}

var _ Querier = (*Store)(nil)

// NewStore wraps a pool. The pool stays owned by the caller.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{Queries: New(pool), pool: pool}
}

// Pool returns the underlying connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// TxOptions tunes Store.InTxOpts.
type TxOptions struct {
	// Isolation is the transaction isolation level; empty means read committed.
	Isolation pgx.TxIsoLevel
	// ReadOnly starts a read-only transaction.
	ReadOnly bool
	// Attempts bounds the retries on serialization failure (40001) and
	// deadlock (40P01); zero means DefaultTxAttempts.
	Attempts int
}

// InTx runs fn inside a read-committed transaction, committing when fn returns
// nil and rolling back otherwise. On a serialization failure or deadlock the
// whole transaction (fn included) is retried, so fn must have no effects
// outside the database.
func (s *Store) InTx(ctx context.Context, fn func(*Queries) error) error {
	return s.InTxOpts(ctx, TxOptions{}, fn)
}

// InTxOpts is InTx with a chosen isolation level, access mode and retry bound.
func (s *Store) InTxOpts(ctx context.Context, opts TxOptions, fn func(*Queries) error) error {
	attempts := opts.Attempts
	if attempts <= 0 {
		attempts = DefaultTxAttempts
	}
	iso := opts.Isolation
	if iso == "" {
		iso = pgx.ReadCommitted
	}
	txOpts := pgx.TxOptions{IsoLevel: iso}
	if opts.ReadOnly {
		txOpts.AccessMode = pgx.ReadOnly
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if werr := sleepCtx(ctx, retryPause(i)); werr != nil {
				return fmt.Errorf("transaction retry: %w (last error: %w)", werr, err)
			}
		}
		err = s.runTx(ctx, txOpts, fn)
		if err == nil || !IsRetryableTxError(err) || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("transaction failed after %d attempts: %w", attempts, err)
}

func (s *Store) runTx(ctx context.Context, opts pgx.TxOptions, fn func(*Queries) error) (err error) {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			// Rollback on an already-failed tx is harmless; its own error
			// adds nothing to the one being returned.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(s.Queries.WithTx(tx)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// PostgreSQL SQLSTATE codes the package inspects.
const (
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
)

// IsRetryableTxError reports whether err is a serialization failure or a
// deadlock, after which the whole transaction may be run again.
func IsRetryableTxError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == codeSerializationFailure || pgErr.Code == codeDeadlockDetected
}

// IsUniqueViolation reports whether err is a unique constraint violation. With
// constraints given, it only matches a violation of one of those constraints
// or unique indexes (e.g. UniqueUsersUsernameLower).
func IsUniqueViolation(err error, constraints ...string) bool {
	return isPgError(err, codeUniqueViolation, constraints)
}

// IsForeignKeyViolation reports whether err is a foreign key violation,
// optionally restricted to the named constraints.
func IsForeignKeyViolation(err error, constraints ...string) bool {
	return isPgError(err, codeForeignKeyViolation, constraints)
}

func isPgError(err error, code string, constraints []string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		return false
	}
	if len(constraints) == 0 {
		return true
	}
	for _, c := range constraints {
		if pgErr.ConstraintName == c {
			return true
		}
	}
	return false
}

// Names of unique indexes, for IsUniqueViolation.
const (
	UniqueUsersUsernameLower   = "users_username_lower_idx"
	UniqueUsersEmailLower      = "users_email_lower_idx"
	UniqueAPIKeysUserTokenName = "api_keys_user_id_token_name_idx"
	UniqueUsersPkey            = "users_pkey"
	UniqueAPIKeysPkey          = "api_keys_pkey"
)

// IsNotFound reports whether err means a :one query matched no row.
func IsNotFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// retryPause is the pause before retry number n (n >= 1): txRetryBase·2^(n-1),
// scaled by a random factor in [0.5, 1.5) so that colliding transactions part.
func retryPause(n int) time.Duration {
	d := txRetryBase << (n - 1)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
