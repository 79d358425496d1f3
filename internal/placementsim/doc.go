// Package placementsim simulates a day of a large haul deployment in
// simulated time, through the real placement core (placement.Place and
// placement.Rebalance) and the real worker targeting (sched.TargetWorkers
// fed by sched.Estimate): 4 clusters of different sizes and GPU types, 20
// teams with quotas, each submitting jobs on its own daily curve, about a
// billion tasks a day at full scale. It reports quota and capacity
// violations (checked every tick from the simulation's own worker records,
// not from the core), utilisation per cluster, pod creations per second
// per cluster against each cluster's API budget, and queue wait p50/p99
// per team.
//
// # Model
//
// Time advances in ticks of one second. Nothing is simulated per task:
// a billion task events would not fit in minutes. A job has one tier; its
// ready tasks wait in FIFO cohorts (a count and the tick they became
// ready), so that queue waits are exact to the tick and weighted by
// tasks. Workers are simulated one by one, each with its reservation:
// placed (waiting for its pod to be created), starting (pod created, not
// yet polling), ready, or draining (reclaimed while running a task).
// The ready workers of a job run its tasks as a fluid: each tick, a
// running task ends with probability tick/d (d the job's task time,
// at least one second), deterministically through a carried fraction;
// free workers then take queued tasks.
//
// Every tick, in order: jobs arrive and feed their tasks; draining
// workers whose task ended exit; starting workers become ready; each job
// runs its tasks, retires workers idle past the idle grace (3 s, the
// runner's default) and computes its target with sched.TargetWorkers
// (estimates of task time per job and worker startup per team, half-life
// 10 minutes, as the Fleet keeps them); the starts that jobs want go to
// placement.Place in one batch, at most as many as the clusters can
// create in the next few seconds, shared between jobs (older first, as
// the Fleet shares its slots); placed workers queue for their cluster's
// pod creations, which a token bucket paces at the cluster's budget, and
// start after the cluster's start delay; placement.Rebalance marks the
// borrowed workers that must go. A reclaimed worker finishes its current
// task and exits; one that has not started yet is dropped.
//
// Determinism: every random draw comes from math/rand/v2 generators seeded
// from the caller's seed, nothing reads the wall clock, and no map is
// iterated where its order could change a figure. A seed always gives the
// same report.
//
// Memory is bounded by the live workers, the active jobs and their
// cohorts (at most one per tick of a job's feeding window); histograms
// have fixed buckets.
//
// It imports the standard library, internal/placement and internal/sched.
package placementsim
