package pgcoord_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/coordinator/pgcoord"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// TestKeyDirectoryAdmitsAcrossReplicas: a peer whose coordinator
// connection is on replica A and whose relay connection reaches replica B
// is admitted by B; a key nobody registered is not; a released key stops
// being admitted.
func TestKeyDirectoryAdmitsAcrossReplicas(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	a, b := newReplica(t, db, time.Second), newReplica(t, db, time.Second)
	keysA, keysB := coordinator.NewNodeKeys(), coordinator.NewNodeKeys()
	keysA.SetObserver(pgcoord.NewKeyDirectory(a.coord))
	dirB := pgcoord.NewKeyDirectory(b.coord)
	keysB.SetObserver(dirB)
	admitB := dirB.AdmitFunc(keysB, 20*time.Millisecond)

	peerKey := key.NewNode().Public()
	release, err := keysA.Register(uuid.New(), peerKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if !admitB(ctx, peerKey) {
		t.Fatal("replica B refused a key replica A's coordinator holds")
	}

	// Attack: a random key waits out the admission window and is refused.
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if admitB(short, key.NewNode().Public()) {
		t.Fatal("replica B admitted a key no coordinator knows")
	}

	release()
	deadline := time.After(waitFor)
	for {
		known, err := dirB.Known(ctx, peerKey)
		if err != nil {
			t.Fatal(err)
		}
		if !known {
			break
		}
		select {
		case <-deadline:
			t.Fatal("a released key is still in the directory")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
