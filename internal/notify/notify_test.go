package notify

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// fakeStore keeps jobs' webhook bookkeeping as the drivers do (the
// drivers' own conformance is storetest.ExerciseNotify).
type fakeStore struct {
	mu     sync.Mutex
	jobs   map[string]*fakeJob
	holder string // the lease's holder ("" none)
}

type fakeJob struct {
	n       store.Notification // Attempts unused: see attempts
	round   int32              // notify_round
	state   string
	event   string
	attempt int32
	err     string
	next    time.Time
	at      time.Time
	records int
}

func newFakeStore() *fakeStore { return &fakeStore{jobs: map[string]*fakeJob{}} }

func (f *fakeStore) add(n store.Notification) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[n.JobID] = &fakeJob{n: n, state: store.NotifyPending}
}

func (f *fakeStore) get(id string) fakeJob {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.jobs[id]
}

// retry stands for RetryJob and the retried run ending in state.
func (f *fakeStore) retry(id string, state store.JobState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[id].n.Retries++
	f.jobs[id].n.State = state
	f.jobs[id].state = store.NotifyPending // as RetryTasks does
}

func (f *fakeStore) AcquireLease(_ context.Context, l store.Lease, _ time.Time) (store.Lease, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holder == "" {
		f.holder = l.Holder
	}
	return l, f.holder == l.Holder, nil
}

func (f *fakeStore) DueNotifications(_ context.Context, now time.Time, limit int) ([]store.Notification, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Notification
	for _, j := range f.jobs {
		if !j.n.State.Terminal() || j.round > j.n.Retries || (!j.next.IsZero() && j.next.After(now)) {
			continue
		}
		n := j.n
		if !j.next.IsZero() {
			n.Attempts = j.attempt
		}
		out = append(out, n)
	}
	return out[:min(len(out), limit)], nil
}

func (f *fakeStore) RecordNotification(_ context.Context, id string, round int32, r store.NotifyResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := store.CheckNotifyResult(round, r); err != nil {
		return err
	}
	j, ok := f.jobs[id]
	if !ok {
		return store.ErrNotFound
	}
	if j.n.Retries+1 != round {
		return store.ErrNotifyRound
	}
	j.state, j.event, j.attempt, j.err, j.next, j.at = r.State, r.Event, r.Attempts, r.Error, r.NextAt, r.DeliveredAt
	if r.Handled() {
		j.round = round
	}
	j.records++
	return nil
}

// receiver is a webhook that answers with the statuses given, then 200,
// and keeps what it got.
type receiver struct {
	t        *testing.T
	mu       sync.Mutex
	statuses []int
	body     string // the answer's body
	got      []delivery
	hook     func() // called within each request, if set
	srv      *httptest.Server
}

type delivery struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{t: t, statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, delivery{req.Header.Clone(), b})
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		hook := r.hook
		r.mu.Unlock()
		if req.Method != http.MethodPost {
			t.Errorf("method %s, want POST", req.Method)
		}
		if hook != nil {
			hook()
		}
		w.WriteHeader(status)
		io.WriteString(w, r.body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// clock is a fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var (
	t0       = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	finished = time.Date(2026, 3, 4, 5, 0, 0, 123456789, time.UTC)
)

func teamKey(team string) []byte { return []byte("key of " + team) }

type fixture struct {
	st  *fakeStore
	clk *clock
	n   *Notifier
	log *bytes.Buffer
}

func setup(t *testing.T, cfg Config) *fixture {
	t.Helper()
	// The test receivers listen on loopback, which the default client
	// refuses (TestPrivateRefused).
	cfg.AllowPrivate = true
	return setupGuarded(t, cfg)
}

// setupGuarded is setup with cfg's AllowPrivate as given.
func setupGuarded(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{st: newFakeStore(), clk: &clock{now: t0}, log: &bytes.Buffer{}}
	cfg.Store, cfg.Key, cfg.Clock = f.st, teamKey, f.clk.Now
	cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: f.log}, nil))
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.n = n
	return f
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func job(id, hook string, state store.JobState, on ...string) store.Notification {
	return store.Notification{
		JobID: id, Namespace: "perception", Name: "nightly", State: state,
		Counts: store.TaskCounts{Succeeded: 9, Failed: 1, UpstreamFailed: 2}, FinishedAt: finished,
		Webhook: hook, On: on,
	}
}

func (f *fixture) once(t *testing.T, wantHandled int) {
	t.Helper()
	n, err := f.n.Once(t.Context())
	if err != nil {
		t.Fatalf("Once: %v", err)
	}
	if n != wantHandled {
		t.Fatalf("Once handled %d, want %d", n, wantHandled)
	}
}

func TestDelivered(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL+"/hook?x=1", store.JobFailed, "failed", "succeeded"))
	f.once(t, 1)
	got := r.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	h, body := got[0].header, got[0].body
	for k, want := range map[string]string{
		"Content-Type":    "application/json",
		"X-Haul-Event":    "job.failed",
		"X-Haul-Delivery": "j1/1",
	} {
		if h.Get(k) != want {
			t.Errorf("header %s: %q, want %q", k, h.Get(k), want)
		}
	}
	// The signature is an HMAC-SHA256 of the body under the team's key.
	if !Verify(teamKey("perception"), body, h.Get("X-Haul-Signature")) {
		t.Errorf("signature %q does not verify with the team's key", h.Get("X-Haul-Signature"))
	}
	if Verify(teamKey("other"), body, h.Get("X-Haul-Signature")) {
		t.Error("signature verifies with another team's key")
	}
	if Verify(teamKey("perception"), append(body, ' '), h.Get("X-Haul-Signature")) {
		t.Error("signature verifies for another body")
	}
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]any{
		"id": "j1/1", "job_id": "j1", "name": "nightly", "namespace": "perception", "state": "failed",
		"counts":      map[string]any{"blocked": 0.0, "queued": 0.0, "running": 0.0, "succeeded": 9.0, "failed": 1.0, "upstream_failed": 2.0, "cancelled": 0.0},
		"finished_at": "2026-03-04T05:00:00.123456789Z", "round": 1.0,
	}
	if gb, wb := mustJSON(ev), mustJSON(want); gb != wb {
		t.Errorf("event\n%s, want\n%s", gb, wb)
	}
	j := f.st.get("j1")
	if j.state != store.NotifyDelivered || j.attempt != 1 || j.round != 1 || j.event != "failed" || !j.at.Equal(t0) || j.err != "" {
		t.Errorf("recorded %+v", j)
	}
	f.once(t, 0) // handled: not sent again
	if len(r.deliveries()) != 1 {
		t.Error("sent again after it was delivered")
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, 500, 502)
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobSucceeded, "succeeded"))
	f.once(t, 0)
	if j := f.st.get("j1"); j.state != store.NotifyPending || j.attempt != 1 || !j.next.Equal(t0.Add(5*time.Second)) || !strings.Contains(j.err, "500") {
		t.Fatalf("after a 500: %+v; want pending, 1 attempt, next in 5s", j)
	}
	f.clk.Set(t0.Add(4 * time.Second))
	f.once(t, 0)
	if n := len(r.deliveries()); n != 1 {
		t.Fatalf("%d deliveries before the backoff passed, want 1", n)
	}
	f.clk.Set(t0.Add(5 * time.Second))
	f.once(t, 0)
	if j := f.st.get("j1"); j.attempt != 2 || !j.next.Equal(t0.Add(15*time.Second)) || !strings.Contains(j.err, "502") {
		t.Fatalf("after a 502: %+v; want 2 attempts, next 10s later", j)
	}
	f.clk.Set(t0.Add(15 * time.Second))
	f.once(t, 1)
	j := f.st.get("j1")
	if j.state != store.NotifyDelivered || j.attempt != 3 || j.err != "" || !j.at.Equal(t0.Add(15*time.Second)) {
		t.Fatalf("after a 200: %+v; want delivered at the 3rd attempt", j)
	}
	got := r.deliveries()
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	for _, d := range got {
		if d.header.Get("X-Haul-Delivery") != "j1/1" || !bytes.Equal(d.body, got[0].body) {
			t.Errorf("attempts differ: %q %s vs %s", d.header.Get("X-Haul-Delivery"), d.body, got[0].body)
		}
	}
}

func TestGivesUp(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	r.body = strings.Repeat("x", 10<<10)
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobFailed, "failed"))
	var waits []time.Duration
	for i := range 8 {
		want := 0
		if i == 7 {
			want = 1
		}
		f.once(t, want)
		j := f.st.get("j1")
		if i < 7 {
			waits = append(waits, j.next.Sub(f.clk.Now()))
			f.clk.Set(j.next)
		}
	}
	if got := len(r.deliveries()); got != 8 {
		t.Fatalf("%d deliveries, want 8", got)
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320}
	for i := range want {
		want[i] *= time.Second
	}
	if mustJSON(waits) != mustJSON(want) {
		t.Errorf("backoffs %v, want %v", waits, want)
	}
	j := f.st.get("j1")
	if j.state != store.NotifyFailed || j.attempt != 8 || j.round != 1 || !j.next.IsZero() {
		t.Fatalf("after 8 failures: %+v; want failed (gave up), round handled", j)
	}
	if !strings.HasPrefix(j.err, "HTTP 503 Service Unavailable: xxx") || len(j.err) > maxBody+100 {
		t.Errorf("error %d bytes: %.80q…; want the status and at most 4 KiB of the body", len(j.err), j.err)
	}
	f.clk.Set(t0.Add(24 * time.Hour))
	f.once(t, 0)
	if got := len(r.deliveries()); got != 8 {
		t.Fatalf("%d deliveries after giving up, want 8", got)
	}
}

func TestSkipped(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobCancelled, "failed", "succeeded"))
	f.once(t, 1)
	if n := len(r.deliveries()); n != 0 {
		t.Fatalf("%d deliveries of a state not in on, want 0", n)
	}
	if j := f.st.get("j1"); j.state != store.NotifySkipped || j.event != "cancelled" || j.round != 1 || j.attempt != 0 {
		t.Fatalf("recorded %+v; want skipped", j)
	}
}

func TestNoRedirect(t *testing.T) {
	t.Parallel()
	var followed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { followed.Add(1) }))
	defer target.Close()
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, target.URL+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer redir.Close()
	f := setup(t, Config{})
	f.st.add(job("j1", redir.URL, store.JobFailed, "failed"))
	f.once(t, 0)
	if followed.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
	j := f.st.get("j1")
	if j.state != store.NotifyPending || !strings.Contains(j.err, "307") || !strings.Contains(j.err, "redirects are not followed") {
		t.Fatalf("recorded %+v; want a failed attempt naming the redirect", j)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	f := setup(t, Config{Timeout: 100 * time.Millisecond})
	f.st.add(job("j1", slow.URL, store.JobFailed, "failed"))
	f.once(t, 0)
	if j := f.st.get("j1"); j.state != store.NotifyPending || !strings.Contains(j.err, "no answer within 100ms") {
		t.Fatalf("recorded %+v; want a failed attempt: no answer", j)
	}
}

func TestBadWebhook(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	f.st.add(job("j1", "ftp://example.com/x", store.JobFailed, "failed"))
	f.once(t, 1)
	if j := f.st.get("j1"); j.state != store.NotifyFailed || !strings.Contains(j.err, "not an http:// or https:// URL") {
		t.Fatalf("recorded %+v; want given up at once", j)
	}
}

// A retried job's new run is due again, in round 2, with its own ID.
func TestRound2(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobFailed, "failed", "succeeded"))
	f.once(t, 1)
	f.st.retry("j1", store.JobSucceeded)
	f.once(t, 1)
	got := r.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	var ev Event
	if err := json.Unmarshal(got[1].body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != "j1/2" || ev.Round != 2 || ev.State != "succeeded" || got[1].header.Get("X-Haul-Delivery") != "j1/2" || got[1].header.Get("X-Haul-Event") != "job.succeeded" {
		t.Errorf("round 2: %+v, headers %v", ev, got[1].header)
	}
	if j := f.st.get("j1"); j.round != 2 || j.attempt != 1 || j.state != store.NotifyDelivered {
		t.Errorf("recorded %+v", j)
	}
}

// A retry while an event is in flight: the answer is not recorded for
// the new run, which is sent in its own round.
func TestRetriedMeanwhile(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobFailed, "failed"))
	var once sync.Once
	r.hook = func() { once.Do(func() { f.st.retry("j1", store.JobFailed) }) }
	f.once(t, 0)
	if j := f.st.get("j1"); j.records != 0 || j.round != 0 {
		t.Fatalf("the stale delivery was recorded: %+v", j)
	}
	f.once(t, 1)
	got := r.deliveries()
	if len(got) != 2 || got[1].header.Get("X-Haul-Delivery") != "j1/2" {
		t.Fatalf("deliveries %d, the second %q; want j1/2", len(got), got[len(got)-1].header.Get("X-Haul-Delivery"))
	}
}

// The signing key shows in no log and no recorded error.
func TestKeyNotLeaked(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, 500)
	r.body = "nope"
	f := setup(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobFailed, "failed"))
	f.once(t, 0)
	f.clk.Set(t0.Add(time.Minute))
	f.once(t, 1)
	key := teamKey("perception")
	j := f.st.get("j1")
	for _, s := range []string{f.log.String(), j.err} {
		if strings.Contains(s, string(key)) || strings.Contains(s, hex.EncodeToString(key)) {
			t.Errorf("the key shows in %q", s)
		}
	}
	if !strings.Contains(f.log.String(), "webhook delivered") {
		t.Errorf("log %q: no delivery logged", f.log.String())
	}
}

// Run works while it holds the lease, and not while another does.
func TestRunUnderLease(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	f := setup(t, Config{Interval: 10 * time.Millisecond, Holder: "me"})
	f.st.holder = "other"
	f.st.add(job("j1", r.srv.URL, store.JobFailed, "failed"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.n.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	if n := len(r.deliveries()); n != 0 {
		t.Fatalf("%d deliveries without the lease", n)
	}
	f.st.mu.Lock()
	f.st.holder = "me"
	f.st.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for f.st.get("j1").state != store.NotifyDelivered {
		if time.Now().After(deadline) {
			t.Fatal("not delivered under the lease within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// By default the notifier connects to public addresses only: a webhook at
// loopback (or a private or link-local address, where clouds serve
// instance credentials) is refused without a request reaching it, and the
// job's record says why; the operator's AllowPrivate lets it through.
func TestPrivateRefused(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	f := setupGuarded(t, Config{})
	f.st.add(job("j1", r.srv.URL, store.JobFailed, "failed"))
	f.once(t, 1)
	j := f.st.get("j1")
	if j.state != store.NotifyFailed || !strings.Contains(j.err, "is internal") || !strings.Contains(j.err, "--webhook-allow-private") {
		t.Fatalf("recorded %+v; want failed at once, saying the address is internal", j)
	}
	if n := len(r.deliveries()); n != 0 {
		t.Fatalf("the internal receiver got %d requests, want none", n)
	}
	for _, a := range []string{"127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "fe80::1", "fd00::1", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1"} {
		if !internal(netip.MustParseAddr(a)) {
			t.Errorf("%s counts as public", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "100.128.0.1"} {
		if internal(netip.MustParseAddr(a)) {
			t.Errorf("%s counts as internal", a)
		}
	}
	f = setupGuarded(t, Config{AllowPrivate: true})
	f.st.add(job("j2", r.srv.URL, store.JobFailed, "failed"))
	f.once(t, 1)
	if j := f.st.get("j2"); j.state != store.NotifyDelivered {
		t.Fatalf("with AllowPrivate: %+v, want delivered", j)
	}
}
