package httpmw_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestInternalServerErrorLogs checks that a handler answering 500 has its
// error logged, with the request's logger, without logging it itself.
func TestInternalServerErrorLogs(t *testing.T) {
	t.Parallel()
	var sink syncBuffer
	logger := slog.New(slog.NewJSONHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := httpmw.Logger(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.InternalServerError(w, r, "Internal error fetching thing.", errors.New("connection reset by peer"))
	}))
	r := httptest.NewRequest(http.MethodPost, "/api/v2/things", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", w.Code)
	}
	var found bool
	for _, l := range sink.lines(t) {
		if l["msg"] != "internal server error" {
			continue
		}
		found = true
		if l["level"] != "ERROR" || l["error"] != "connection reset by peer" || l["message"] != "Internal error fetching thing." ||
			l["method"] != http.MethodPost || l["path"] != "/api/v2/things" {
			t.Fatalf("error line %v", l)
		}
	}
	if !found {
		t.Fatalf("the error was not logged: %v", sink.lines(t))
	}
}
