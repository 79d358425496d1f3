// Package fleet is the worker core of one runner shard: a pure state
// machine that holds the workers of every job and tier of the shard and
// decides when to start them, when to tell them to exit and when to give
// them up as lost. Events (a job added or ended, a tier's demand, a poll,
// a worker's running count, a worker's end) and Step(now, slots) go in;
// decisions (Start, Stop, Exit, Lost) and NextWake come out. It does no
// I/O, starts no goroutine and never reads the clock: every call that
// needs the time takes `now`. The runner's shell holds one *Fleet per
// shard, serialises calls to it under the shard's lock and carries the
// decisions out (the worker backend, poll replies, the store).
//
// It imports only the standard library and internal/sched (for reuse
// targeting: sched.TargetWorkers and sched.Estimate).
//
// # States
//
// A worker serves one job and one tier. Its states:
//
//	(Step: Start) ──▶ starting ──first poll──▶ idle ◀──running count──▶ live
//	(Adopt) ─────────────────────────────────▶ idle or live
//	starting, idle, live ──Step: Exit──▶ exiting
//	any state ──Ended──▶ gone
//	any state ──Step: Stop + Lost (deadline passed)──▶ gone
//
// Starting: asked for, has not polled. Idle: polled, runs nothing. Live:
// polled, runs at least one attempt (SetRunning counts them). Exiting:
// told to exit. Gone: forgotten; a later event naming it reports an
// unknown worker (Ended answers known=false).
//
// # Decisions and what the shell does with them
//
//   - Start{Job, Tier, ID}: ask the backend for worker ID. The Fleet counts
//     it as starting at once. If the backend refuses, call Ended(ID): a
//     start that fails counts as a worker that ended before its first poll.
//   - Exit{ID, Why}: hand the worker nothing more and answer its next poll
//     at which it runs nothing with exit (wake a held poll now); once that
//     reply is sent, call Ended(ID). A starting worker gets exit at its
//     first poll.
//   - Stop{ID, Why}: stop the worker forcibly through the backend. It is
//     always directly followed by Lost{ID, Why} for the same worker, so that
//     a frozen worker's attempts are gone before they are retried.
//   - Lost{ID, Why}: the attempts the worker ran are lost (retried without
//     using a retry). The Fleet has forgotten the worker already; a later
//     Ended for it is answered known=false.
//
// No Step decides two things for one worker except Stop and its Lost; a
// worker gets at most one Exit in its life, and none after a Stop.
//
// # Step
//
// Step(now, slots) first applies liveness to every job, then walks the
// jobs by priority (highest Job.Priority first), then oldest first (by
// Job.Created, then ID) for the rest:
//
//  1. Liveness. A worker that has not polled is lost at started +
//     StartTimeout (default 2m); one that has, at its last poll +
//     WorkerTimeout (default 45s). Deadlines are inclusive: at the deadline
//     itself the worker is lost. Decision: Stop, then Lost. A starting worker
//     lost this way counts as a failed start (see Start backoff). Each lost
//     worker frees a slot for this Step's starts (the shell's count drops by
//     one for each Lost).
//  2. Job end. Every worker of an ended job that is not exiting gets Exit
//     (why "job ended"), busy ones included: they get exit when they next
//     run nothing.
//  3. Asked retirement, per tier: a worker the shell retired (Retire)
//     and not told to exit yet gets Exit with the shell's reason.
//  4. Idle retirement, per tier. A worker idle since IdleTimeout (default
//     3s) or longer gets Exit when its tier has nothing waiting
//     (Demand.Waiting, which counts tasks in a retry backoff, is 0), or when
//     the tier has more workers than max(1, target). Workers are looked at in
//     the order they were added; each Exit lowers the count before the next
//     is looked at. Idle time starts at the first poll (or adoption) and
//     again whenever the running count drops to 0.
//  5. Starts, per tier. While the tier's workers are fewer than its target,
//     start one, unless its start backoff or a placement hold runs, the job has MaxWorkers
//     workers (all states, exiting included), or the slots are used up.
//     Slots are shared by the jobs in order, so an older job's wants come
//     first. Several shards share the runner's cap: the shell passes each
//     Step the slots it reserved (the cap less the workers of all shards)
//     and gives back those the Starts did not use.
//
// "The tier's workers" for targets and retirement are those not exiting;
// caps count every worker until it is gone.
//
// Starved lists, after a Step, the tiers that wanted more workers (their
// target less their workers, within the job's MaxWorkers, outside a start
// backoff or placement hold) when no slot was left for them, in the order
// the Step looked at them. The shell uses it to ask placement for the
// room a team is owed even while the runner's cap is full: otherwise
// workers borrowing another team's quota could hold every slot, and the
// owner would never ask for its capacity back.
//
// # Targets
//
// A tier's target is sched.TargetWorkers over its demand (Queued = Ready,
// Running, RunningElapsed), IdleGrace = IdleTimeout, Max = the smaller of
// the job's MaxWorkers and Config.MaxWorkers (those that are set), the
// task-time estimate of the (job, tier) or, before it has one, of the
// job's namespace, and the namespace's worker-startup estimate. Estimates
// are sched.Estimate means with half-life Config.HalfLife (default 10m) or
// the namespace's own (NamespaceHalfLife). ObserveTask feeds the task
// estimates; a worker's first poll feeds the startup estimate with the
// time since its start. Demand.Elapsed ages by Demand.Running every second
// after SetDemand, so a target moves with time while attempts run.
//
// # Start backoff
//
// A worker that ends (Ended, or Lost at its start deadline) before its
// first poll counts a failure of its (job, tier). After n failures in a
// row the tier's next start waits min(1s·2^(n-1), 1m) from that end: 1s,
// 2s, 4s, … 32s, then 1m. The first poll of any worker of the tier resets
// the count and the wait.
//
// # Placement
//
// The shell asks placement for each Start. A refused start is handed back
// with Refused(ID, until): the worker is forgotten without counting as a
// failed start (no start was tried), and its (job, tier) starts nothing
// before until (the hold; NextWake includes its end). Retire(ID, why)
// asks that a worker go when its borrowed capacity is wanted back or its
// cluster drains: the next Step tells it to exit, so it finishes what it
// runs and takes nothing more; from then on it does not count towards its
// tier's target, so the tier may start a replacement (which placement
// puts where there is room). TierStatus reports a tier's target, its
// active and starting workers (the oldest start), the job's cap, and the
// backoff and hold ends: what "why is my task not running" needs.
//
// # Jobs
//
// AddJob adds a job with its tiers, MaxWorkers, Created time and
// namespace; SetDemand tells a tier's waiting, ready and running counts as
// the job's scheduling core has them. EndJob marks it ended: no more
// starts, every worker told to exit. The Fleet forgets an ended job when
// its last worker is gone; JobWorkers then reports it unknown, and the
// shell may drop its own state.
//
// # Adoption
//
// Adopt adds a worker the Fleet did not start (started by another runner
// that owned the shard before) as polled now, idle or live by its running
// count. No cap refuses it: it exists and may run attempts. A tier with
// more workers than its target then starts none, and its idle workers
// retire after their grace.
//
// # Worker IDs
//
// The Fleet names the workers it starts "<job>-<tier>-<IDPrefix><n>", n
// counting from 1 for the Fleet's life and skipping IDs it holds (adopted
// ones). The shell picks IDPrefix so that no other Fleet can name a worker
// the same (its incarnation and the shard lease's epoch).
//
// # NextWake
//
// NextWake is the earliest time a Step can decide something without an
// event in between: the earliest liveness deadline, end of an idle grace,
// end of a start backoff, and the time a drifting target first crosses a
// tier's worker count (computed from the shape of sched.TargetWorkers and
// pinned down to the nanosecond by bisection). After an event that may
// allow a decision at once, it is the latest time the Fleet saw. Starts
// held back only for want of slots wait for the shell: Step again when
// slots free up.
//
// # Memory
//
// Jobs and workers live in slabs of values indexed by two maps from ID to
// slab index; a tier keeps its workers' slab indexes. The Fleet holds
// nothing per task.
package fleet
