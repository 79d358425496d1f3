// Package chaos holds the chaos test of haul's production topology (design
// 009): PostgreSQL, two gateways and three runners as real processes with
// local workers, running a large DAG job and a dynamic one while the test
// kills gateways and runners with SIGKILL at random moments, restarts them,
// and restarts PostgreSQL. It checks that both jobs succeed with every
// task run to success exactly once, and reports the failover times, the
// attempts run again and the API errors clients saw.
//
// The package has no code besides its tests. `go test ./internal/chaos/`
// runs the short form; HAUL_CHAOS=full (`make chaos`) the full one;
// HAUL_CHAOS_SEED=N repeats a run's random choices.
package chaos
