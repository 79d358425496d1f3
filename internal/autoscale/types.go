// The autoscaler's contract, shared by the planner, the providers (aws,
// sim) and the simulator: launch configs, demand (pending pods) and supply
// (nodes, in-flight launches), plans, and the Provider interface. The
// package documentation is in doc.go.

package autoscale

import (
	"context"
	"time"
)

// Resources is an amount of CPU, memory and GPUs.
type Resources struct {
	MilliCPU    int64
	MemoryBytes int64
	GPU         int32
	// GPUType names the GPU model ("a10g", "a100"); requests with GPU > 0
	// and a GPUType fit only configs with the same type.
	GPUType string
}

// Purchase is how an instance is bought.
type Purchase string

const (
	OnDemand Purchase = "on-demand"
	Spot     Purchase = "spot"
)

// Taint and Toleration follow Kubernetes semantics (Effect NoSchedule).
type Taint struct{ Key, Value, Effect string }

// Toleration tolerates a taint: Operator "Exists" (any value) or "Equal".
type Toleration struct{ Key, Operator, Value, Effect string }

// LaunchConfig is one way to get a node: instance type × zone × purchase
// option (plus variations such as a different image).
type LaunchConfig struct {
	Name         string // unique, such as "r5.8xlarge/us-east-1a/spot"
	InstanceType string
	Zone         string
	Purchase     Purchase
	// Capacity is what a node of this config can hold (allocatable).
	Capacity Resources
	// PricePerHour in dollars; spot prices change over time (Provider.Prices).
	PricePerHour float64
	// Reserved marks capacity already paid for (on-demand capacity
	// reservations): the prefer-reserved strategy uses it first.
	Reserved bool
	// Labels the node will carry (matched against pods' node selectors).
	Labels map[string]string
	Taints []Taint
	// Per-config limits; zero means none. The rates count per planning
	// interval, like the global ones.
	MaxNodes             int
	MaxSpendPerHour      float64
	MaxAddPerInterval    int
	MaxRemovePerInterval int
}

// Pod is a pending worker pod: the demand.
type Pod struct {
	ID           string
	Requests     Resources
	NodeSelector map[string]string
	Tolerations  []Toleration
	PendingSince time.Time
}

// Node is a node in the cluster (or launched and not yet registered).
type Node struct {
	ID         string
	Config     string // LaunchConfig.Name
	Ready      bool
	LaunchedAt time.Time
	// WorkerPods is the number of worker pods running on the node. A node
	// with any is never removed by the autoscaler.
	WorkerPods int
	// IdleSince is when the node last had no worker pods (zero while it has
	// some).
	IdleSince time.Time
	// Free is the capacity not requested by the pods on it.
	Free Resources
}

// Launch is an in-flight launch: asked for, not yet nodes.
type Launch struct {
	Config string
	Count  int
	At     time.Time
}

// Limits bound the plan, globally (Config.Limits) — per-config limits live
// in LaunchConfig. Zero means no limit.
type Limits struct {
	MaxNodes        int
	MaxSpendPerHour float64
	// Per planning interval.
	MaxAddPerInterval    int
	MaxRemovePerInterval int
}

// Config configures a Planner.
type Config struct {
	Configs []LaunchConfig
	Limits  Limits
	// Strategy ranks candidate configs: "cost" (default: cheapest per unit
	// of the demand a node can hold), "prefer-large" (fewer, larger nodes)
	// or "prefer-reserved" (reserved capacity first, then cost).
	Strategy string
	// ScaleDownGrace is how long a node must have had no worker pods before
	// it is removed (default 10m).
	ScaleDownGrace time.Duration
	// CapacityBackoff is how long a config stays capacity-limited after a
	// launch got fewer instances than asked (default 5m).
	CapacityBackoff time.Duration
	// Interval is the planning interval the add/remove rates count over
	// (default 30s).
	Interval time.Duration
}

// State is what the planner sees at one decision.
type State struct {
	Now      time.Time
	Pending  []Pod
	Nodes    []Node
	InFlight []Launch
	// Prices overrides LaunchConfig.PricePerHour by config name (current
	// spot prices); missing names keep the configured price.
	Prices map[string]float64
}

// Order asks for Count nodes of one config.
type Order struct {
	Config string
	Count  int
}

// Shortfall is demand the plan could not cover, and why.
type Shortfall struct {
	Pods   int
	Reason string // e.g. "global max nodes", "max spend rate", "no config fits", "capacity-limited", "add rate"
}

// Plan is one decision: launches in priority order, nodes to remove, and
// what remains unmet.
type Plan struct {
	Launches  []Order
	Removals  []string // node IDs
	Shortfall []Shortfall
}

// Policy is a decision maker the simulator can run: haul's Planner, or the
// baseline modelled on the open-source cluster autoscaler.
type Policy interface {
	Plan(s State) Plan
	// Launched reports how many of an Order the provider delivered; fewer
	// than asked marks the config capacity-limited.
	Launched(config string, asked, got int, now time.Time)
}

// Instance is a machine a provider launched.
type Instance struct {
	ID         string
	Config     string
	LaunchedAt time.Time
}

// Provider is a cloud: it launches and terminates instances of launch
// configs and reports prices.
type Provider interface {
	// Launch asks for count instances of cfg and returns those it got,
	// which may be fewer (insufficient capacity) without an error.
	Launch(ctx context.Context, cfg LaunchConfig, count int) ([]Instance, error)
	Terminate(ctx context.Context, ids []string) error
	// Prices returns current prices per hour by config name, for the
	// configs whose price moves (spot).
	Prices(ctx context.Context, configs []LaunchConfig) (map[string]float64, error)
}
