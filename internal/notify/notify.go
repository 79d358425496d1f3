package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/haul-dev/haul/internal/store"
)

// Defaults of Config.
const (
	DefaultInterval = time.Second
	DefaultTimeout  = 10 * time.Second
	DefaultMaxTries = 8
	DefaultBackoff  = 5 * time.Second
	DefaultParallel = 8
	// LeaseName is the store lease the working notifier holds.
	LeaseName = "notifier"
	leaseTTL  = 30 * time.Second
	// maxBody is how much of a receiver's answer is read (for the error).
	maxBody = 4 << 10
)

// Store is what the notifier needs of the store: its lease and the
// webhook bookkeeping.
type Store interface {
	AcquireLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, bool, error)
	store.NotifyStore
}

// Config sets up a Notifier.
type Config struct {
	Store Store
	// Key returns the signing key of a team's events (required). The key
	// is never logged.
	Key func(team string) []byte
	// Interval is how often the notifier looks for due jobs (default 1s).
	Interval time.Duration
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// MaxTries bounds the attempts of one round (default 8).
	MaxTries int
	// Backoff is the wait after the first failed attempt (default 5s);
	// it doubles after each.
	Backoff time.Duration
	// Parallel bounds the deliveries in flight at once (default 8).
	Parallel int
	// Client sends the events (default: one that follows no redirect and
	// connects to public addresses only, see guard.go). Its CheckRedirect
	// is replaced: redirects are never followed.
	Client *http.Client
	// AllowPrivate lets the default client reach internal addresses
	// (loopback, private, link-local): for receivers inside the
	// deployment's network, when the operator trusts every team's specs.
	AllowPrivate bool
	// Holder names this notifier in its lease.
	Holder string
	Logger *slog.Logger
	Clock  func() time.Time
}

// Notifier sends ended jobs' events to their webhooks.
type Notifier struct {
	cfg    Config
	client *http.Client
}

// New returns a Notifier.
func New(cfg Config) (*Notifier, error) {
	if cfg.Store == nil {
		return nil, errors.New("notify: no store")
	}
	if cfg.Key == nil {
		return nil, errors.New("notify: no signing key")
	}
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.MaxTries = cmp.Or(cfg.MaxTries, DefaultMaxTries)
	cfg.Backoff = cmp.Or(cfg.Backoff, DefaultBackoff)
	cfg.Parallel = cmp.Or(cfg.Parallel, DefaultParallel)
	cfg.Holder = cmp.Or(cfg.Holder, fmt.Sprintf("notifier-%d", os.Getpid()))
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	c := &http.Client{}
	if cfg.Client != nil {
		*c = *cfg.Client
	} else if !cfg.AllowPrivate {
		c.Transport = guardedTransport(cfg.Timeout)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Notifier{cfg: cfg, client: c}, nil
}

// Event is the body of a webhook's POST.
type Event struct {
	// ID is "JOB/ROUND": the same for every attempt of one delivery, the
	// key receivers dedupe by.
	ID         string    `json:"id"`
	JobID      string    `json:"job_id"`
	Name       string    `json:"name"`
	Namespace  string    `json:"namespace"`
	State      string    `json:"state"`
	Counts     Counts    `json:"counts"`
	FinishedAt time.Time `json:"finished_at"`
	// Round is the job's run: 1, then one more per retry.
	Round int32 `json:"round"`
}

// Counts is how many of the job's tasks ended in each state.
type Counts struct {
	Blocked        int64 `json:"blocked"`
	Queued         int64 `json:"queued"`
	Running        int64 `json:"running"`
	Succeeded      int64 `json:"succeeded"`
	Failed         int64 `json:"failed"`
	UpstreamFailed int64 `json:"upstream_failed"`
	Cancelled      int64 `json:"cancelled"`
}

// EventOf is the event of a due notification.
func EventOf(n store.Notification) Event {
	c := n.Counts
	return Event{
		ID: DeliveryID(n.JobID, n.Round()), JobID: n.JobID, Name: n.Name, Namespace: n.Namespace, State: string(n.State),
		Counts:     Counts{c.Blocked, c.Queued, c.Running, c.Succeeded, c.Failed, c.UpstreamFailed, c.Cancelled},
		FinishedAt: n.FinishedAt.UTC(), Round: n.Round(),
	}
}

// DeliveryID is the ID of a job's round's event.
func DeliveryID(job string, round int32) string { return fmt.Sprintf("%s/%d", job, round) }

// Sign returns the X-Haul-Signature of body under key.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature under key (in constant
// time): what a receiver written in Go does.
func Verify(key, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(key, body)))
}

// Run sends due events until ctx ends, while it holds the notifier lease.
func (n *Notifier) Run(ctx context.Context) {
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		now := n.cfg.Clock()
		_, held, err := n.cfg.Store.AcquireLease(ctx, store.Lease{Name: LeaseName, Holder: n.cfg.Holder, ExpiresAt: now.Add(leaseTTL)}, now)
		switch {
		case err != nil && ctx.Err() == nil:
			n.cfg.Logger.Warn("notifier: cannot take its lease", "err", err)
		case held:
			if _, err := n.Once(ctx); err != nil && ctx.Err() == nil {
				n.cfg.Logger.Warn("notifier", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once handles the jobs due now: it sends their events (or records them
// skipped) and records the outcomes. It returns how many were handled
// for good (delivered, gave up or skipped).
func (n *Notifier) Once(ctx context.Context) (int, error) {
	// Two deliveries per slot at most: with the default timeout a tick
	// ends within 20 s, well inside the lease, so that no other notifier
	// takes over (and sends the same events) while this one is at work.
	due, err := n.cfg.Store.DueNotifications(ctx, n.cfg.Clock(), 2*n.cfg.Parallel)
	if err != nil {
		return 0, err
	}
	var (
		mu      sync.Mutex
		handled int
		errs    []error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, n.cfg.Parallel)
	)
	for _, d := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			done, err := n.handle(ctx, d)
			mu.Lock()
			defer mu.Unlock()
			if done {
				handled++
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return handled, errors.Join(errs...)
}

// handle delivers one job's event and records the outcome; done reports
// that the round is handled.
func (n *Notifier) handle(ctx context.Context, d store.Notification) (done bool, err error) {
	log := n.cfg.Logger.With("job", d.JobID, "round", d.Round())
	event := string(d.State)
	var r store.NotifyResult
	if !slices.Contains(d.On, event) {
		r = store.NotifyResult{State: store.NotifySkipped, Event: event, Attempts: d.Attempts}
	} else {
		attempt := d.Attempts + 1
		err := n.send(ctx, d)
		if ctx.Err() != nil {
			return false, nil // stopping: the attempt does not count, it is made again
		}
		now := n.cfg.Clock().UTC()
		var perm *permanent
		switch {
		case err == nil:
			r = store.NotifyResult{State: store.NotifyDelivered, Event: event, Attempts: attempt, DeliveredAt: now}
			log.Info("webhook delivered", "state", event, "host", host(d.Webhook), "attempts", attempt)
		case int(attempt) >= n.cfg.MaxTries || errors.As(err, &perm):
			r = store.NotifyResult{State: store.NotifyFailed, Event: event, Attempts: attempt, Error: text(err.Error())}
			log.Warn("webhook: gave up", "state", event, "host", host(d.Webhook), "attempts", attempt, "err", r.Error)
		default:
			r = store.NotifyResult{State: store.NotifyPending, Event: event, Attempts: attempt, Error: text(err.Error()),
				NextAt: now.Add(n.backoff(attempt))}
			log.Info("webhook: attempt failed, tried again later", "state", event, "host", host(d.Webhook), "attempts", attempt, "next", r.NextAt, "err", r.Error)
		}
	}
	err = n.cfg.Store.RecordNotification(ctx, d.JobID, d.Round(), r)
	switch {
	case errors.Is(err, store.ErrNotifyRound):
		log.Info("webhook: the job was retried meanwhile; its new run is sent in its own round")
		return false, nil
	case err != nil:
		return false, fmt.Errorf("record the webhook delivery of job %s: %w", d.JobID, err)
	}
	return r.Handled(), nil
}

// backoff is the wait after the attempt-th failed attempt.
func (n *Notifier) backoff(attempt int32) time.Duration {
	d := n.cfg.Backoff
	for i := int32(1); i < attempt && d < 24*time.Hour; i++ {
		d *= 2
	}
	return d
}

// permanent marks a failure that trying again cannot mend.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }

// send POSTs the event of d once.
func (n *Notifier) send(ctx context.Context, d store.Notification) error {
	u, err := url.Parse(d.Webhook)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &permanent{fmt.Errorf("webhook %q is not an http:// or https:// URL", d.Webhook)}
	}
	key := n.cfg.Key(d.Namespace)
	if len(key) == 0 {
		return fmt.Errorf("no signing key for team %q", d.Namespace)
	}
	body, err := json.Marshal(EventOf(d))
	if err != nil {
		return &permanent{fmt.Errorf("encode the event: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return &permanent{fmt.Errorf("webhook %q: %w", d.Webhook, err)}
	}
	id := DeliveryID(d.JobID, d.Round())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "haul-webhook")
	req.Header.Set("X-Haul-Event", "job."+string(d.State))
	req.Header.Set("X-Haul-Delivery", id)
	req.Header.Set("X-Haul-Signature", Sign(key, body))
	resp, err := n.client.Do(req)
	if err != nil {
		var private ErrPrivateAddress
		if errors.As(err, &private) {
			// Trying again would dial the same address.
			return &permanent{private}
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the job's own; say what went wrong
		}
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("POST: no answer within %v", n.cfg.Timeout)
		}
		return fmt.Errorf("POST: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	// The receiver's answer goes into the job's record, which its team
	// reads: safe because the guard keeps receivers public unless the
	// operator allowed internal ones.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	msg := fmt.Sprintf("HTTP %s", resp.Status)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += fmt.Sprintf(" (redirects are not followed; Location %q)", resp.Header.Get("Location"))
	}
	if s := strings.TrimSpace(string(b)); s != "" {
		msg += ": " + s
	}
	return errors.New(msg)
}

// text makes s storable: valid UTF-8, no NUL bytes, at most 4 KiB and a
// bit (a receiver's answer is read up to 4 KiB).
func text(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) > maxBody+256 {
		cut := maxBody + 256
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// host is the webhook's host, for logs (its path and query may hold a
// token of the receiver's).
func host(webhook string) string {
	if u, err := url.Parse(webhook); err == nil {
		return u.Host
	}
	return "?"
}
