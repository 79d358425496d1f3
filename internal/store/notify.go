package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Notify states (JobNotify.State, the jobs.notify_state column).
const (
	// NotifyPending: the job has not ended, or its end is due to be
	// delivered (a failed attempt keeps it pending, with LastError and
	// NextAt set).
	NotifyPending = "pending"
	// NotifyDelivered: the receiver answered 2xx.
	NotifyDelivered = "delivered"
	// NotifyFailed: the notifier gave up (every try failed).
	NotifyFailed = "failed"
	// NotifySkipped: the job ended in a state not in the webhook's On.
	NotifySkipped = "skipped"
)

// ErrNotifyRound is wrapped by RecordNotification when the job is no
// longer at the round recorded (it was retried meanwhile): nothing was
// written, and the job's latest run is due in its own round.
var ErrNotifyRound = errors.New("the job was retried since: the notification is for an earlier run")

// Notification is a job whose latest run's end is due to be sent to its
// webhook (DueNotifications).
type Notification struct {
	JobID      string
	Namespace  string
	Name       string
	State      JobState
	Counts     TaskCounts
	FinishedAt time.Time
	// Retries is the job's retry count: the run whose end this is, the
	// notification's round, is Retries+1.
	Retries int32
	Webhook string
	On      []string
	// Attempts is how many deliveries of this round were tried so far.
	Attempts int32
}

// Round is the run whose end the notification is for (1 + retries).
func (n Notification) Round() int32 { return n.Retries + 1 }

// NotifyResult is what became of a delivery attempt (RecordNotification).
type NotifyResult struct {
	// State is NotifyDelivered, NotifyPending (failed for now: try again
	// at NextAt), NotifyFailed (gave up) or NotifySkipped.
	State string
	// Event is the job state the delivery was for.
	Event string
	// Attempts is how many deliveries of the round were tried, this one
	// included (0 for skipped).
	Attempts int32
	// Error is why the latest attempt failed ("" when delivered or
	// skipped).
	Error string
	// NextAt is when to try again (NotifyPending only).
	NextAt time.Time
	// DeliveredAt is when the receiver answered 2xx (NotifyDelivered
	// only).
	DeliveredAt time.Time
}

// Handled reports whether the result ends its round: delivered, gave up
// or skipped.
func (r NotifyResult) Handled() bool { return r.State != NotifyPending }

// NotifyStore is the store of the webhook notifier (package notify).
type NotifyStore interface {
	// DueNotifications returns up to limit (<= 0: 100) jobs whose latest
	// run's end is due to be sent: terminal (succeeded, failed or
	// cancelled), with a webhook, whose round (retries+1) is not handled
	// yet (notify_round <= retries) and whose backoff has passed
	// (notify_next_at unset or <= now); oldest finish first. Attempts
	// counts the tries of that round only (a round handled before starts
	// the next at 0).
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]Notification, error)
	// RecordNotification records what became of a delivery of the job's
	// round: the state, event, attempts, error, next attempt and delivery
	// time; a handled result (delivered, failed, skipped) also marks the
	// round handled, so the job is no longer due. It changes nothing and
	// returns an error wrapping ErrNotifyRound when the job is no longer
	// at that round (retries+1 != round: it was retried meanwhile), and
	// ErrNotFound for an unknown job.
	RecordNotification(ctx context.Context, jobID string, round int32, r NotifyResult) error
}

// CheckNotifyResult reports (wrapping ErrRejected) why the drivers refuse
// to record r for round: an unknown state, a round below 1, negative
// attempts, or text a column cannot hold (invalid UTF-8, NUL bytes).
func CheckNotifyResult(round int32, r NotifyResult) error {
	switch {
	case r.State != NotifyPending && r.State != NotifyDelivered && r.State != NotifyFailed && r.State != NotifySkipped:
		return fmt.Errorf("notification state %q is not pending, delivered, failed or skipped: %w", r.State, ErrRejected)
	case round < 1:
		return fmt.Errorf("notification round %d: runs count from 1: %w", round, ErrRejected)
	case r.Attempts < 0:
		return fmt.Errorf("notification attempts %d is negative: %w", r.Attempts, ErrRejected)
	}
	for _, f := range []struct{ name, v string }{{"event", r.Event}, {"error", r.Error}} {
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return fmt.Errorf("notification %s %q is not text without NUL bytes: %w", f.name, f.v, ErrRejected)
		}
	}
	return nil
}
