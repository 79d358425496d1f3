// Package sched is the scheduling core of one job: a pure state machine that
// takes events (an attempt started, an attempt ended, a cancel) and clock
// ticks, and hands back decisions (which task to run next, which attempt to
// kill) and the state transitions to persist. It does no I/O, starts no
// goroutine and never reads the clock: every call takes `now`. The runner
// holds one *Job per active job and serialises calls to it; the same code
// can run inside a discrete-event simulator.
//
// It imports only the standard library and internal/dag.
//
// # States
//
// Every task is in one State:
//
//	blocked ──parents done──▶ queued ──Next──▶ running ──Success──▶ succeeded
//	                            ▲                 │
//	                            ├──Failure/Timeout, retries left (after a backoff)
//	                            └──Lost, fewer than MaxLost lost so far (at once)
//
//	running ──Failure/Timeout, no retry left──▶ failed
//	running ──Lost, MaxLost lost already──────▶ failed (reason "lost")
//	running ──OOM, tiers left─────────────────▶ queued on the next tier (at once)
//	running ──OOM on the last tier────────────▶ failed (reason "oom")
//	failed ──▶ every non-terminal descendant becomes upstream_failed
//	cancel ──▶ cancelled (a running attempt is killed first; see below)
//
// Succeeded, Failed, UpstreamFailed and Cancelled are terminal: a task
// enters one of them exactly once and never leaves it.
//
// A task is ready when all its parents succeeded. A group dependency
// (`after: ["sim-*"]`) is one node of the graph whose parents are the
// group's members: it completes when its last member succeeds, and then
// counts as one succeeded parent of each task that named it. Dispatch is
// eager: the children released by a Success are queued within the same
// Finished call. Each tier has a FIFO of ready tasks; Next(tier) pops the
// oldest, marks it Running and numbers the attempt (1, 2, …).
//
// # Retries
//
// An attempt that ends in Failure (non-zero exit, signal, start error) or
// Timeout is a failed attempt. A task with Retries r may fail r times and
// still be retried; failure r+1 makes it Failed. Retry n (n = failures so
// far) waits min(BackoffBase·2^(n-1), BackoffMax): the task is Queued
// during the backoff but Next does not return it before the backoff ends;
// Tick (or a later Next) releases it to the back of its tier's queue.
//
// A Lost attempt (its worker or runner went away) says nothing about the
// task, so it does not use up a retry: the task is re-queued at once, with
// no backoff. Only MaxLost lost attempts are tolerated, so that a task that
// kills its worker every time ends; the next one fails the task with reason
// "lost". Attempt numbers keep counting across failures and losses.
//
// # Tiers
//
// A job has Config.Tiers worker tiers (resource configurations, smallest
// first). A task's first attempt runs on its configured tier. An attempt
// that ends OOM (killed for using more memory than its tier allows) moves
// the task to the next tier and re-queues it at once, with no backoff and
// without using a retry: running out of memory says the tier was too small,
// not that the task is broken. OOM on the last tier fails the task with
// reason "oom". Other failures retry on the same tier. Restore takes the
// tier back after a restart (RestoreTier).
//
// A task with a Timeout gets a deadline when an attempt starts; Tick emits
// one Kill (reason "timeout") per attempt past its deadline. The task stays
// Running until the caller reports the attempt finished (Timeout, or Lost if
// the worker is gone).
//
// # Cancellation
//
// Cancel (the job) and CancelTask (a task and its descendants) make every
// affected task that is not Running Cancelled at once, and emit a Kill
// (reason "cancelled") for each Running attempt. Such a task becomes
// Cancelled when its attempt is reported finished with any outcome but
// Success; an attempt that succeeded anyway counts as Succeeded.
//
// # Restart
//
// After a runner restart the caller builds a new Job, calls Restore for
// every task that is not Blocked, then Start. Start recomputes everything
// derived: remaining-parent counts from succeeded parents (and completed
// groups), UpstreamFailed and Cancelled for descendants of terminal tasks,
// and the ready queues. A task restored as Running lost its attempt with the
// old runner: it is re-queued as for a Lost outcome, keeping its attempt
// count and its retries — unless the caller called Keep for it (after a
// failover its worker may still run the attempt, and the new runner adopts
// it): then it stays Running with its attempt and a fresh timeout, and the
// caller later reports its end, or Lost if no worker claims it.
//
// A retry of an ended job (RetryJob) is a restart too: the caller restores
// the retried tasks as Blocked with the attempts they had, and gives
// Restore as failed attempts only the failures since the retry (none at
// first). So a retried task gets its full Retries again while its attempt
// numbers continue (attempt 2 after a failed attempt 1).
//
// # Output
//
// Every state change is recorded as a Transition and every kill request as
// a Kill; Drain hands them over in order. For a task that became
// UpstreamFailed, UpstreamCause names the Failed task whose failure reached
// it (its parent, or a further ancestor), so that the caller can say which. A stale report (an attempt that is
// not the task's current one, or a task that is not Running) is ignored and
// records nothing.
//
// # Memory
//
// Per-task state lives in parallel arrays of small integers (about 20 bytes
// a task); task configurations are interned; the ready queues are rings of
// int32; backoffs and deadlines are heaps holding only tasks that are in
// backoff or running.
//
// # Explaining
//
// BackoffUntil and InBackoff answer "why is this task not running" for
// retries: when a task's backoff ends, how many of a tier's tasks wait one.
// They change nothing and are linear in the backoff heap: for a person
// asking, not for the hot path.
package sched
