package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newPubsub(t *testing.T, ctx context.Context, url string, opts pubsub.Options) *pubsub.Pubsub {
	t.Helper()
	ps, err := pubsub.NewFromURL(ctx, nil, url, opts)
	if err != nil {
		t.Fatalf("new pubsub: %v", err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return ps
}

// event is one delivery seen by a test listener.
type event struct {
	msg string
	err error
}

func collect(t *testing.T, ps *pubsub.Pubsub, name string, buf int) (<-chan event, func()) {
	t.Helper()
	ch := make(chan event, buf)
	cancel, err := ps.SubscribeWithErr(name, func(ctx context.Context, msg []byte, err error) {
		select {
		case ch <- event{msg: string(msg), err: err}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		t.Fatalf("subscribe %s: %v", name, err)
	}
	t.Cleanup(cancel)
	return ch, cancel
}

func receive(t *testing.T, ctx context.Context, ch <-chan event) event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-ctx.Done():
		t.Fatalf("no delivery: %v", ctx.Err())
		return event{}
	}
}

func TestTwoPubsubsExchangeMessagesInOrder(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := dbtestutil.NewDB(t)
	a := newPubsub(t, ctx, url, pubsub.Options{})
	b := newPubsub(t, ctx, url, pubsub.Options{})

	atB, _ := collect(t, b, "greetings", 200)
	atA, _ := collect(t, a, "replies", 10)
	const n = 100
	for i := range n {
		if err := a.Publish("greetings", []byte(fmt.Sprintf("hello %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		e := receive(t, ctx, atB)
		if e.err != nil || e.msg != fmt.Sprintf("hello %d", i) {
			t.Fatalf("delivery %d = %+v", i, e)
		}
	}
	if err := b.Publish("replies", []byte("hi back")); err != nil {
		t.Fatal(err)
	}
	if e := receive(t, ctx, atA); e.msg != "hi back" {
		t.Fatalf("reply = %+v", e)
	}
}

func TestSubscribeWithoutErr(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ps := newPubsub(t, ctx, dbtestutil.NewDB(t), pubsub.Options{})
	got := make(chan string, 1)
	cancel, err := ps.Subscribe("plain", func(_ context.Context, msg []byte) { got <- string(msg) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := ps.Publish("plain", []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "x" {
			t.Fatalf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

func TestCancelStopsOnlyThatSubscriber(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ps := newPubsub(t, ctx, dbtestutil.NewDB(t), pubsub.Options{})
	first, cancelFirst := collect(t, ps, "shared", 10)
	second, _ := collect(t, ps, "shared", 10)

	if err := ps.Publish("shared", []byte("one")); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan event{first, second} {
		if e := receive(t, ctx, ch); e.msg != "one" {
			t.Fatalf("got %+v", e)
		}
	}
	cancelFirst()
	cancelFirst() // idempotent
	if err := ps.Publish("shared", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if e := receive(t, ctx, second); e.msg != "two" {
		t.Fatalf("got %+v", e)
	}
	// "two" reached second, which was enqueued from the same notification
	// as first would have been: first got nothing.
	select {
	case e := <-first:
		t.Fatalf("cancelled subscriber received %+v", e)
	default:
	}

	// Unsubscribe everyone, then subscribe again: LISTEN is re-issued.
	third, cancelThird := collect(t, ps, "other", 10)
	cancelThird()
	fourth, _ := collect(t, ps, "other", 10)
	if err := ps.Publish("other", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if e := receive(t, ctx, fourth); e.msg != "again" {
		t.Fatalf("got %+v", e)
	}
	select {
	case e := <-third:
		t.Fatalf("cancelled subscriber received %+v", e)
	default:
	}
}

func TestSlowSubscriberDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const queue = 4
	ps := newPubsub(t, ctx, dbtestutil.NewDB(t), pubsub.Options{QueueSize: queue})

	release := make(chan struct{})
	slow := make(chan event, 100)
	cancelSlow, err := ps.SubscribeWithErr("busy", func(ctx context.Context, msg []byte, err error) {
		select {
		case <-release:
		case <-ctx.Done():
			return
		}
		slow <- event{msg: string(msg), err: err}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancelSlow()
	fast, _ := collect(t, ps, "busy", 100)

	// The fast subscriber gets everything while the slow one is stuck.
	// Each message is published once the previous one reached the fast
	// subscriber, so only the slow subscriber's queue can fill up.
	const n = 20
	for i := range n {
		if err := ps.Publish("busy", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if e := receive(t, ctx, fast); e.err != nil || e.msg != fmt.Sprint(i) {
			t.Fatalf("fast delivery %d = %+v", i, e)
		}
	}
	close(release)
	// The slow one gets message 0 (being handled when it blocked), then
	// its queue in order, then the report that the rest was dropped.
	var got []event
	for {
		e := receive(t, ctx, slow)
		got = append(got, e)
		if e.err != nil {
			break
		}
	}
	if !errors.Is(got[len(got)-1].err, pubsub.ErrDroppedMessages) {
		t.Fatalf("slow subscriber: last delivery %+v, want ErrDroppedMessages", got[len(got)-1])
	}
	msgs := got[:len(got)-1]
	if len(msgs) < 1 || len(msgs) > queue+1 {
		t.Fatalf("slow subscriber got %d messages before the drop report, want 1..%d", len(msgs), queue+1)
	}
	for i, e := range msgs {
		if e.msg != fmt.Sprint(i) {
			t.Fatalf("slow delivery %d = %q, want in order", i, e.msg)
		}
	}
	// Afterwards it is healthy again.
	if err := ps.Publish("busy", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if e := receive(t, ctx, slow); e.msg != "after" {
		t.Fatalf("after overflow: %+v", e)
	}
}

func TestReconnectAfterBackendKilled(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := dbtestutil.NewDB(t)
	listener := newPubsub(t, ctx, url, pubsub.Options{})
	publisher := newPubsub(t, ctx, url, pubsub.Options{})
	ch, _ := collect(t, listener, "survive", 100)

	if err := publisher.Publish("survive", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if e := receive(t, ctx, ch); e.msg != "before" {
		t.Fatalf("got %+v", e)
	}

	admin := dbtestutil.NewPoolFor(t, url)
	var killed int
	if err := admin.QueryRow(ctx,
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE application_name = $1 AND datname = current_database()`,
		pubsub.ApplicationName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	// Both pubsubs have a listener connection on this database.
	if killed != 2 {
		t.Fatalf("terminated %d listener backends, want 2", killed)
	}

	e := receive(t, ctx, ch)
	if !errors.Is(e.err, pubsub.ErrDroppedMessages) {
		t.Fatalf("after kill got %+v, want ErrDroppedMessages", e)
	}
	if err := publisher.Publish("survive", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if e := receive(t, ctx, ch); e.msg != "after" || e.err != nil {
		t.Fatalf("after reconnect got %+v", e)
	}
}

func TestPublishValidation(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ps := newPubsub(t, ctx, dbtestutil.NewDB(t), pubsub.Options{})
	ch, _ := collect(t, ps, "limits", 2)

	tests := []struct {
		name  string
		event string
		msg   []byte
		want  error
	}{
		{"too large", "limits", []byte(strings.Repeat("x", pubsub.MaxPayloadBytes+1)), pubsub.ErrPayloadTooLarge},
		{"NUL byte", "limits", []byte("a\x00b"), pubsub.ErrInvalidPayload},
		{"not UTF-8", "limits", []byte{0xff, 0xfe}, pubsub.ErrInvalidPayload},
		{"empty event", "", []byte("x"), pubsub.ErrInvalidEvent},
		{"long event", strings.Repeat("e", pubsub.MaxEventBytes+1), []byte("x"), pubsub.ErrInvalidEvent},
		{"largest payload", "limits", []byte(strings.Repeat("y", pubsub.MaxPayloadBytes)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ps.Publish(tt.event, tt.msg)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Publish = %v, want %v", err, tt.want)
			}
		})
	}
	if e := receive(t, ctx, ch); len(e.msg) != pubsub.MaxPayloadBytes {
		t.Fatalf("largest payload delivered with %d bytes", len(e.msg))
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ps, err := pubsub.NewFromURL(ctx, nil, dbtestutil.NewDB(t), pubsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	_, err = ps.SubscribeWithErr("closing", func(ctx context.Context, _ []byte, _ error) {})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(stopped)
		_ = ps.Close()
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	if err := ps.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := ps.Subscribe("closing", func(context.Context, []byte) {}); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v", err)
	}
	if err := ps.Publish("closing", []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Publish after Close = %v", err)
	}
}
