package database

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the embedded migration files (golang-migrate layout,
// NNNNNN_name.up.sql / .down.sql) under the directory "migrations".
func Migrations() embed.FS { return migrationsFS }

// Migrate applies every pending embedded migration to the database at url.
// It is idempotent, and safe when several processes call it at once:
// golang-migrate holds a PostgreSQL advisory lock while it works, so
// concurrent callers wait and then find nothing left to do.
func Migrate(ctx context.Context, url string) error {
	m, closeFn, err := newMigrator(ctx, url)
	if err != nil {
		return err
	}
	defer closeFn()

	stop := context.AfterFunc(ctx, func() {
		select {
		case m.GracefulStop <- true:
		default:
		}
	})
	defer stop()

	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		if ctx.Err() != nil {
			return fmt.Errorf("migrate up: %w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// MigrateDown reverts every applied migration. Meant for tests of the down
// migrations; coderd never calls it.
func MigrateDown(ctx context.Context, url string) error {
	m, closeFn, err := newMigrator(ctx, url)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := m.Down(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// MigrationVersion reports the schema version recorded in the database at url
// (0 when no migration was ever applied) and whether the last migration
// failed halfway (dirty).
func MigrationVersion(ctx context.Context, url string) (version uint, dirty bool, err error) {
	m, closeFn, err := newMigrator(ctx, url)
	if err != nil {
		return 0, false, err
	}
	defer closeFn()
	v, d, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read migration version: %w", err)
	}
	return v, d, nil
}

func newMigrator(ctx context.Context, url string) (*migrate.Migrate, func(), error) {
	connCfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, nil, fmt.Errorf("parse postgres url: %w", err)
	}
	db := stdlib.OpenDB(*connCfg)
	// One connection for the driver (it holds the advisory lock on it) and
	// one for the version queries.
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("ping postgres for migrations: %w", err)
	}
	drv, err := migratepgx.WithInstance(db, &migratepgx.Config{})
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("init migration driver: %w", err)
	}
	src, err := iofs.New(migrationsFS, "migrations")
	if err != nil {
		_ = drv.Close()
		return nil, nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		_ = src.Close()
		_ = drv.Close()
		return nil, nil, fmt.Errorf("init migrator: %w", err)
	}
	closeFn := func() {
		_, _ = m.Close()
	}
	return m, closeFn, nil
}
