// Package sim is a discrete-event simulator for autoscaling policies: a
// simulated cloud (Cloud, an autoscale.Provider with boot delays, capacity
// shortages, spot interruptions and moving spot prices), a workload
// generator (spike, diurnal and steady scenarios of worker pods), a
// simulation loop that runs an autoscale.Policy every planning interval and
// places pods with a first-fit scheduler, a baseline policy modelled on the
// open-source Kubernetes cluster autoscaler, and Compare, which runs haul's
// planner against the baseline on the same workload and reports the cost
// and the pods' waiting times.
//
// Everything runs in simulated time: nothing reads the wall clock or sleeps,
// and every random draw comes from math/rand/v2 generators seeded from the
// scenario's seed, so a seed always gives the same report.
//
// The package imports only the standard library and internal/autoscale
// (the contract: Policy, State, Plan, LaunchConfig, Provider).
package sim
