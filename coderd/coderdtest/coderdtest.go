// Package coderdtest starts a real coderd (on a fresh PostgreSQL database
// from dbtestutil) behind an httptest server, and creates users for tests.
package coderdtest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/replicasync"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// Options tunes New; the zero value is fine.
type Options struct {
	// API options; Database and AccessURL are filled in.
	API coderd.Options
	// QueryTracer, when set, traces every query of the server's database
	// pool (e.g. a QueryRecorder).
	QueryTracer pgx.QueryTracer
	// Replicas, when set, registers the server as a replica with these
	// options (Options.API.Replicas is filled in).
	Replicas *replicasync.Options
}

// Server is a running test coderd.
type Server struct {
	// API is the coderd instance.
	API *coderd.API
	// URL is the server's base URL.
	URL *url.URL
	// DB is the store of the server's fresh database.
	DB *database.Store
}

// New starts coderd on a fresh database and returns an unauthenticated
// client plus the server. Everything stops in t.Cleanup.
func New(t testing.TB, opts *Options) (*codersdk.Client, *Server) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	store := database.NewStore(newPool(t, opts.QueryTracer))

	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	serverURL, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	apiOpts := opts.API
	apiOpts.Database = store
	if opts.Replicas != nil {
		m, err := replicasync.New(context.Background(), apiOpts.Logger, store, nil, *opts.Replicas)
		if err != nil {
			t.Fatalf("register replica: %v", err)
		}
		t.Cleanup(func() { _ = m.Close() })
		apiOpts.Replicas = m
	}
	if apiOpts.AccessURL == nil {
		apiOpts.AccessURL = serverURL
	}
	api, err := coderd.New(apiOpts)
	if err != nil {
		t.Fatalf("create coderd: %v", err)
	}
	t.Cleanup(func() { _ = api.Close() })
	srv.Config.Handler = api.Handler()
	return codersdk.New(serverURL), &Server{API: api, URL: serverURL, DB: store}
}

// newPool opens a pool on a fresh database, traced by tracer when it is
// set; both are closed/dropped when the test ends.
func newPool(t testing.TB, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	if tracer == nil {
		return dbtestutil.NewPool(t)
	}
	cfg, err := pgxpool.ParseConfig(dbtestutil.NewDB(t))
	if err != nil {
		t.Fatalf("parse test database url: %v", err)
	}
	cfg.ConnConfig.Tracer = tracer
	cfg.MaxConns = database.DefaultMaxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open traced pool: %v", err)
	}
	// Registered after the database's drop, so it runs before it.
	t.Cleanup(pool.Close)
	return pool
}

// FirstUserPassword is the password of users created by this package.
const FirstUserPassword = "SomeSecurePassword!"

// FirstUser is the owner created by CreateFirstUser.
type FirstUser struct {
	UserID   string
	Username string
	Email    string
}

// CreateFirstUser creates the first user (an owner) and sets its session on
// client.
func CreateFirstUser(t testing.TB, client *codersdk.Client) FirstUser {
	t.Helper()
	ctx := context.Background()
	req := codersdk.CreateFirstUserRequest{
		Email: "owner@coder.test", Username: "owner", Name: "The Owner", Password: FirstUserPassword,
	}
	resp, err := client.CreateFirstUser(ctx, req)
	if err != nil {
		t.Fatalf("create first user: %v", err)
	}
	login, err := client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: req.Email, Password: req.Password})
	if err != nil {
		t.Fatalf("log in first user: %v", err)
	}
	client.SetSessionToken(login.SessionToken)
	return FirstUser{UserID: resp.UserID.String(), Username: req.Username, Email: req.Email}
}

// CreateAnotherUser creates a user with the given site roles through the
// owner's client, logs it in and returns its client and user.
func CreateAnotherUser(t testing.TB, owner *codersdk.Client, roles ...string) (*codersdk.Client, codersdk.User) {
	t.Helper()
	ctx := context.Background()
	suffix, err := apikey.RandomString(8)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.ToLower(suffix)
	req := codersdk.CreateUserRequest{
		Email:    fmt.Sprintf("user-%s@coder.test", n),
		Username: "user-" + n,
		Password: FirstUserPassword,
		Roles:    roles,
	}
	user, err := owner.CreateUser(ctx, req)
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	client := codersdk.New(owner.URL)
	login, err := client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: req.Email, Password: req.Password})
	if err != nil {
		t.Fatalf("log in user: %v", err)
	}
	client.SetSessionToken(login.SessionToken)
	return client, user
}
