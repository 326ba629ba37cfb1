package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/buildinfo"
	"github.com/wgmesh/coder/coderd/replicasync"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/coordinator/pgcoord"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/pubsub"
	"github.com/wgmesh/coder/derp"
)

// EnvDERPServerRelayURL is the env twin of --derp-server-relay-url.
const EnvDERPServerRelayURL = "CODER_DERP_SERVER_RELAY_URL"

// meshKeyConfig is the site_configs key of the DERP mesh key.
const meshKeyConfig = "derp_mesh_key"

// HAConfig tunes high availability, which is on whenever the server uses an
// external PostgreSQL (--postgres-url): every such server is a replica that
// registers itself, coordinates through the database and meshes its relay
// with the other replicas'. The zero value uses the defaults.
type HAConfig struct {
	// ReplicaUpdateInterval is the replica heartbeat (default 5s).
	ReplicaUpdateInterval time.Duration
	// CoordinatorHeartbeat is the coordinator heartbeat (default 2s):
	// peers of a replica silent for 3 heartbeats are announced lost.
	CoordinatorHeartbeat time.Duration
}

// haState is what a replica runs besides coderd.
type haState struct {
	replicas *replicasync.Manager
	coord    *pgcoord.Coordinator
}

// startHA starts the replica registration, the PostgreSQL coordinator and
// the relay mesh, and fills the agent options with them.
func startHA(ctx context.Context, cfg ServerConfig, pool *pgxpool.Pool, ps *pubsub.Pubsub, agentOpts *coderd.AgentOptions, logger *slog.Logger) (_ *haState, err error) {
	h := &haState{}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	srv := agentOpts.DERPServer
	if srv != nil {
		meshKey, err := loadMeshKey(ctx, pool)
		if err != nil {
			return nil, err
		}
		if err := srv.SetMeshKey(meshKey); err != nil {
			return nil, err
		}
		if cfg.DERP.RelayURL == "" {
			logger.Warn("--derp-server-relay-url is empty: this replica's relay does not mesh with the other replicas', " +
				"so relayed (non-direct) connections between peers homed on different replicas fail")
		}
	}
	h.replicas, err = replicasync.New(ctx, logger.With("component", "replicasync"), database.NewStore(pool), ps, replicasync.Options{
		RegionID:       cfg.DERP.RegionID,
		RelayAddress:   cfg.DERP.RelayURL,
		Version:        buildinfo.Version(),
		UpdateInterval: cfg.HA.ReplicaUpdateInterval,
		OnChange: func(peers []codersdk.Replica) {
			if srv == nil || cfg.DERP.RelayURL == "" {
				return
			}
			var urls []string
			for _, p := range peers {
				if p.RelayAddress != "" && p.RegionID == cfg.DERP.RegionID {
					urls = append(urls, p.RelayAddress)
				}
			}
			if err := srv.SetMeshPeers(urls); err != nil {
				logger.Error("update DERP mesh", "error", err)
				return
			}
			logger.Info("DERP mesh updated", "peers", urls)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("register replica: %w", err)
	}
	h.coord, err = pgcoord.New(ctx, pool, ps, pgcoord.Options{
		Logger:            logger.With("component", "coordinator"),
		ID:                h.replicas.Self().ID,
		HeartbeatInterval: cfg.HA.CoordinatorHeartbeat,
	})
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL coordinator: %w", err)
	}
	agentOpts.Coordinator = h.coord
	agentOpts.NodeKeyDirectory = pgcoord.NewKeyDirectory(h.coord)
	logger.Info("high availability: replica registered", "replica_id", h.replicas.Self().ID, "relay_url", cfg.DERP.RelayURL)
	return h, nil
}

// loadMeshKey returns the deployment's mesh key, generating it once.
func loadMeshKey(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	if _, err := pool.Exec(ctx, `INSERT INTO site_configs (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`,
		meshKeyConfig, derp.NewMeshKey()); err != nil {
		return "", fmt.Errorf("store DERP mesh key: %w", err)
	}
	var k string
	if err := pool.QueryRow(ctx, `SELECT value FROM site_configs WHERE key = $1`, meshKeyConfig).Scan(&k); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return "", errors.New("DERP mesh key vanished")
		}
		return "", fmt.Errorf("load DERP mesh key: %w", err)
	}
	return k, nil
}

// close stops the coordinator (its peers are marked lost so they move to
// another replica) and deregisters the replica.
func (h *haState) close() error {
	if h == nil {
		return nil
	}
	var errs []error
	if h.coord != nil {
		errs = append(errs, h.coord.Close())
	}
	if h.replicas != nil {
		errs = append(errs, h.replicas.Close())
	}
	return errors.Join(errs...)
}

// replicaManager returns the replica registration (nil without HA).
func (h *haState) replicaManager() *replicasync.Manager {
	if h == nil {
		return nil
	}
	return h.replicas
}
