// Package autoscale decides how many nodes of which kind a cluster needs.
//
// # The policy
//
// A Planner is called once per planning interval with a State: the pending
// worker pods (demand), the nodes and the launches in flight (supply), the
// current prices and the time. It returns a Plan: launches in priority
// order, idle nodes to remove, and the demand it could not cover, counted
// by reason. Between calls it remembers only three things: which configs are
// capacity-limited, how many nodes were launched recently and how many it
// removed recently. It reads no clock and does no I/O, so the same inputs
// give the same plan; a simulator drives it with simulated time.
//
// # Demand
//
// Pending pods with the same requests, node selector and tolerations are
// one shape, handled as a count: ten thousand identical pods cost what one
// does. A pod fits a launch config when its requests are within the
// config's capacity in CPU, memory and GPUs, the GPU type it asks for (if
// it asks for GPUs with a type) is the config's, every label of its node
// selector is on the config with the same value, and it tolerates every
// NoSchedule and NoExecute taint of the config (Kubernetes semantics, see
// Tolerates). Fits is the exported form of that test.
//
// Pods that fit the supply already there are covered and need nothing new.
// The supply is the free capacity of Ready nodes, the whole capacity of
// nodes that have registered but are not Ready yet and run no worker pod
// (they are booting), and the capacity of in-flight launches. The planner
// packs the pods onto it first fit decreasing: shapes by memory, then CPU,
// largest first, each onto the first bins with room whose labels, taints
// and GPU type admit it (Ready nodes by ID, then booting nodes by ID, then
// in-flight launches by config). What does not fit is the uncovered
// demand.
//
// # Ranking
//
// The uncovered pods are grouped by the set of configs they fit, and the
// groups are served in order of their largest pod. A group's pods first
// take the room left on the nodes already planned for earlier groups. For
// the rest, every config of the set that is not capacity-limited is ranked
// by the strategy:
//
//   - cost (the default): price per hour (State.Prices overriding the
//     configured price) divided by how many of the group's pods one node of
//     the config holds, packed first fit decreasing; ties by name. A big
//     node is cheaper per pod only when there are pods enough to fill it.
//   - prefer-large: the largest capacity first (memory, then CPU), then
//     cost: fewer, larger nodes when throughput matters more than price.
//   - prefer-reserved: reserved configs (capacity already paid for) first,
//     then cost.
//
// The planner then adds nodes of the best config one at a time, each
// filled with as many of the group's pods as fit (largest first), until
// the group is covered or one more node would break a limit; then it goes
// on with the next-best config, and so on down the ranking. Launches for
// the same config from several groups are merged into one Order, placed
// where the config was first chosen.
//
// # Limits
//
// A plan never breaks a limit; a limit already broken by the supply only
// stops further launches. Before each node it adds, the planner checks, in
// this order:
//
//   - global max nodes: all nodes (of any config, Ready or not) plus
//     in-flight launches plus planned nodes;
//   - global max spend: their price per hour at current prices, except that a
//     spot node counts at the on-demand price of its instance type when that
//     config is known and dearer (spot prices do not exceed it, so the cap
//     holds however they move); nodes of configs the planner does not know
//     cost nothing here;
//   - config max nodes and config max spend: the same, for the config;
//   - add rate: nodes planned by this call plus nodes reported by Launched
//     (got > 0) within the last Interval, up to and including now;
//   - config add rate: the same, for the config (LaunchConfig.MaxAddPerInterval).
//
// Demand left uncovered is reported in Plan.Shortfall by reason: "no config
// fits" when no config fits the pods at all, "capacity-limited" when every
// config that fits is marked, and otherwise the limit that stopped the last
// config tried for the group (the worst-ranked one that is not marked);
// when several limits stop that config, the first in the order above is
// named. The shortfall counts every pending pod that neither the supply nor
// the plan covers, each once.
//
// # Capacity-limited marks
//
// Launched reports what the provider delivered for an Order. Fewer nodes
// than asked means the config has no capacity now: it is marked
// capacity-limited until now+CapacityBackoff, and while marked it is left
// out of the rankings, so the next-best config is asked at once, in the
// same plan. A later Launched that got all it asked for clears the mark
// early.
//
// # Scale-down
//
// A Ready node of a known config with no worker pods, idle (IdleSince, or
// LaunchedAt when IdleSince is zero) for at least ScaleDownGrace, is
// removed, the longest idle first, unless some pending pod could run in its
// free capacity. A node with worker pods is never removed; nodes that are
// not Ready are left alone. At most MaxRemovePerInterval nodes are removed
// per Interval, and at most a config's own MaxRemovePerInterval of that
// config; a node whose config's rate is used up is skipped for the next
// idle one. The planner counts the removals it returned in earlier
// calls within the last Interval (before now); a second call with the same
// Now replaces the first call's removals instead of adding to them.
//
// # Defaults
//
// Strategy cost, ScaleDownGrace 10m, CapacityBackoff 5m, Interval 30s; a
// zero limit is no limit. NewPlanner rejects configs with empty or
// duplicate names, capacity that is not positive, negative or infinite
// prices and limits, unknown purchase options, taint effects and
// strategies, and negative durations. Bad values in a State cannot be
// rejected: negative requests count as zero, in-flight launches with a
// non-positive count are ignored, and a negative, NaN or infinite price
// override keeps the configured price.
package autoscale
