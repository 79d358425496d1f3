package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// hookReceiver is a webhook: it answers 500 to the first fails requests
// of each delivery ID, then 200, and keeps every request.
type hookReceiver struct {
	mu    sync.Mutex
	fails int
	got   []hookRequest
	seen  map[string]int
	srv   *httptest.Server
}

type hookRequest struct {
	path   string
	header http.Header
	body   []byte
	at     time.Time
}

func newHookReceiver(t *testing.T, fails int) *hookReceiver {
	h := &hookReceiver{fails: fails, seen: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, hookRequest{r.URL.Path, r.Header.Clone(), b, time.Now()})
		id := r.Header.Get("X-Haul-Delivery")
		h.seen[id]++
		n := h.seen[id]
		h.mu.Unlock()
		if n <= h.fails {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) requests(path string) []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookRequest
	for _, r := range h.got {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// jobNotification is `haul job get J -o json`'s notification.
func jobNotification(t *testing.T, s *upServer, id string) map[string]any {
	t.Helper()
	r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "job", "get", id, "-o", "json")
	if r.code != 0 {
		t.Fatalf("job get %s: %s", id, r.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("job get -o json: %v\n%s", err, r.stdout)
	}
	if j, ok := doc["job"].(map[string]any); ok {
		doc = j
	}
	n, _ := doc["notification"].(map[string]any)
	if n == nil {
		t.Fatalf("job get %s -o json shows no notification:\n%s", id, r.stdout)
	}
	return n
}

// waitNotification waits until the job's notification is in state.
func waitNotification(t *testing.T, s *upServer, id, state string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := jobNotification(t, s, id)
		if n["state"] == state {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: notification %v, not %s after %v; server log:\n%s", id, n, state, timeout, s.log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestWebhook: a failed job's event reaches its webhook after two 500s
// (three attempts, one delivery ID, signed with the team's key as `haul
// team webhook-key` shows it); a job ending in a state not in on is
// skipped; a retry of the job sends its new end as round 2.
func TestWebhook(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, dbURL string) {
		h := newHookReceiver(t, 2)
		// The receiver listens on loopback, an internal address.
		s := startUp(t, freePort(t), t.TempDir(), dbURL, "--webhook-allow-private")
		env := []string{"HAUL_SERVER=" + s.url()}

		r := haul(t, env, "team", "webhook-key", "default")
		if r.code != 0 {
			t.Fatalf("team webhook-key default: %s", r.stderr)
		}
		key, err := hex.DecodeString(strings.TrimSpace(r.stdout))
		if err != nil || len(key) != 32 {
			t.Fatalf("team webhook-key printed %q: want 64 hex digits (%v)", r.stdout, err)
		}

		failing := submit(t, s, fmt.Sprintf(`
name: hooked
notify: {webhook: %s/failed, on: [failed, succeeded]}
tasks:
  - key: ok
    command: [sh, -c, "exit 0"]
  - key: boom
    command: [sh, -c, "exit 3"]
`, h.srv.URL))
		skipped := submit(t, s, fmt.Sprintf(`
name: quiet
notify: {webhook: %s/skipped, on: [failed]}
tasks:
  - key: ok
    command: [sh, -c, "exit 0"]
`, h.srv.URL))

		n := waitNotification(t, s, failing, "delivered", 2*time.Minute)
		if n["attempts"] != 3.0 || n["event"] != "failed" {
			t.Errorf("notification %v: want delivered at the 3rd attempt, for failed", n)
		}
		got := h.requests("/failed")
		if len(got) != 3 {
			t.Fatalf("the receiver got %d requests, want 3 (two 500s, then 2xx)", len(got))
		}
		if gap := got[1].at.Sub(got[0].at); gap < 4*time.Second {
			t.Errorf("the second attempt came %v after the first: want the 5s backoff", gap)
		}
		for i, req := range got {
			if id := req.header.Get("X-Haul-Delivery"); id != failing+"/1" {
				t.Errorf("request %d: delivery %q, want %s/1", i, id, failing)
			}
			if ev := req.header.Get("X-Haul-Event"); ev != "job.failed" {
				t.Errorf("request %d: event %q, want job.failed", i, ev)
			}
			if ct := req.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("request %d: content type %q", i, ct)
			}
			m := hmac.New(sha256.New, key)
			m.Write(req.body)
			if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); !hmac.Equal([]byte(req.header.Get("X-Haul-Signature")), []byte(want)) {
				t.Errorf("request %d: signature %q does not verify with haul team webhook-key default", i, req.header.Get("X-Haul-Signature"))
			}
			var ev struct {
				ID        string         `json:"id"`
				JobID     string         `json:"job_id"`
				Name      string         `json:"name"`
				Namespace string         `json:"namespace"`
				State     string         `json:"state"`
				Round     int            `json:"round"`
				Counts    map[string]int `json:"counts"`
			}
			if err := json.Unmarshal(req.body, &ev); err != nil {
				t.Fatalf("request %d body %s: %v", i, req.body, err)
			}
			if ev.ID != failing+"/1" || ev.JobID != failing || ev.Name != "hooked" || ev.Namespace != "default" || ev.State != "failed" || ev.Round != 1 ||
				ev.Counts["succeeded"] != 1 || ev.Counts["failed"] != 1 {
				t.Errorf("request %d: event %s", i, req.body)
			}
		}

		if n := waitNotification(t, s, skipped, "skipped", time.Minute); n["event"] != "succeeded" {
			t.Errorf("skipped job's notification %v: want event succeeded", n)
		}
		if got := h.requests("/skipped"); len(got) != 0 {
			t.Errorf("a job that ended in a state not in on sent %d requests", len(got))
		}

		// A retry ends in failure again: its end is round 2, a new delivery.
		c := s.client()
		if _, err := c.RetryJob(context.Background(), connect.NewRequest(&apiv1.RetryJobRequest{JobId: failing})); err != nil {
			t.Fatalf("RetryJob: %v", err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for len(h.requests("/failed")) < 6 {
			if time.Now().After(deadline) {
				t.Fatalf("round 2: the receiver got %d requests in all, want 6; server log:\n%s", len(h.requests("/failed")), s.log)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, req := range h.requests("/failed")[3:] {
			if id := req.header.Get("X-Haul-Delivery"); id != failing+"/2" {
				t.Errorf("after the retry: delivery %q, want %s/2", id, failing)
			}
		}
		n = waitNotification(t, s, failing, "delivered", time.Minute)
		if n["attempts"] != 3.0 {
			t.Errorf("round 2's notification %v: want 3 attempts (its own)", n)
		}
	})
}
