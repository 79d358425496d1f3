// Package notify sends jobs' ends to their webhooks.
//
// A job's spec may name a webhook:
//
//	notify: {webhook: https://ci.example/haul, on: [failed, succeeded, cancelled]}
//
// When the job ends, the Notifier POSTs one event to the webhook if the
// job's state is in on, and records the outcome on the job
// (Job.Notify, shown by `haul job get` as its notification).
//
// # Rounds
//
// A job's runs are numbered: the first run is round 1, and each RetryJob
// starts the next (round = retries + 1). Each round's end is delivered
// once: the store keeps the last handled round (notify_round), and a job
// is due when it is terminal, has a webhook and its current round is not
// handled (store.NotifyStore.DueNotifications). A record is conditional
// on the job still being at the round it is for, so a retry that happened
// while an event was in flight is never marked handled by it: the new
// run's end is due in its own round.
//
// # The event
//
// The body is JSON (Event):
//
//	{"id": "JOB/ROUND", "job_id": "JOB", "name": "nightly", "namespace": "perception",
//	 "state": "failed", "counts": {"blocked": 0, "queued": 0, "running": 0, "succeeded": 9,
//	 "failed": 1, "upstream_failed": 2, "cancelled": 0},
//	 "finished_at": "2026-01-02T03:04:05.123456789Z", "round": 1}
//
// with the headers
//
//	Content-Type: application/json
//	X-Haul-Event: job.<state>
//	X-Haul-Delivery: <job>/<round>              (the same as the body's id)
//	X-Haul-Signature: sha256=<hex HMAC-SHA256(key, body)>
//
// The key is the team's (the job's namespace): Config.Key derives it from
// the deployment key, and `haul team webhook-key TEAM` shows it to the
// team's admins. The key is never logged nor put in an error.
//
// # Delivery
//
// A 2xx answer within Timeout (10 s) is a delivery; anything else (another
// status, a redirect, which is never followed, a timeout, a refused
// connection) is a failed attempt. Failed attempts are tried again after
// a backoff of 5 s doubling (5 s, 10 s, 20 s, …), MaxTries (8) attempts in
// all, after which the notifier gives up (state failed) with the last
// error. Errors hold the status and at most 4 KiB of the answer's body
// (the rest is not read). A job whose state is not in on is recorded
// skipped and nothing is sent.
//
// Delivery is at least once: the outcome is recorded after the receiver
// answered, so a notifier that stops between the two (or loses its lease
// to another) sends the same event again. Receivers dedupe by the event's
// id (X-Haul-Delivery).
//
// # Running
//
// One notifier works at a time per deployment: it holds the store lease
// "notifier" (30 s), taken again every Interval (1 s), and at each tick it
// sends what is due, up to Parallel (8) deliveries at once and twice that
// per tick, so that a tick of slow receivers ends well inside the lease.
// Runners (the runner roles of `haul server`, and `haul up`) run one
// each; whichever holds the lease works, the others wait.
package notify
