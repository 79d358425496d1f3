// Package reusesim simulates haul's worker policies in simulated time, to
// measure them before a cluster does: worker reuse targeting (the
// scheduling core's sched.TargetWorkers fed by sched.Estimate, the code the
// runner runs) against one worker per task and Spark-style dynamic
// allocation, on workloads of short, long and mixed tasks (Compare, Run);
// and automated resource tiers against sizing every task for the largest
// (RunTiers).
//
// Both simulations are deterministic discrete-event models: simulated time
// is a float64 of seconds, events come off a heap in a fixed order, every
// random draw comes from a math/rand/v2 generator seeded from the caller's
// seed, and nothing reads the wall clock, sleeps or starts a goroutine. A
// seed always gives the same figures.
//
// It imports only the standard library and internal/sched.
package reusesim
