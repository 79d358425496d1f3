package autoscale

import (
	"cmp"
	"strings"
)

// Strategies (Config.Strategy).
const (
	// StrategyCost ranks configs by price per hour divided by how many of
	// the demand's pods one node holds: the cheapest per unit of demand
	// first.
	StrategyCost = "cost"
	// StrategyPreferLarge ranks the largest capacity first (memory, then
	// CPU), then by cost: fewer, larger nodes.
	StrategyPreferLarge = "prefer-large"
	// StrategyPreferReserved ranks reserved configs first, then by cost.
	StrategyPreferReserved = "prefer-reserved"
)

// candidate is a launch config considered for one group of pods.
type candidate struct {
	cfg      int
	name     string
	capacity res
	reserved bool
	// perNode is how many of the group's pods one node holds;
	// unitCost is the price per hour divided by perNode.
	perNode  int64
	unitCost float64
}

// rankFunc orders candidates, best first; every one ends in a comparison
// of names so that the order is total.
type rankFunc func(a, b *candidate) int

func strategyRank(name string) (rankFunc, bool) {
	switch name {
	case StrategyCost:
		return compareCost, true
	case StrategyPreferLarge:
		return comparePreferLarge, true
	case StrategyPreferReserved:
		return comparePreferReserved, true
	}
	return nil, false
}

func compareCost(a, b *candidate) int {
	if c := cmp.Compare(a.unitCost, b.unitCost); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

func comparePreferLarge(a, b *candidate) int {
	if c := cmp.Compare(b.capacity.mem, a.capacity.mem); c != 0 {
		return c
	}
	if c := cmp.Compare(b.capacity.cpu, a.capacity.cpu); c != 0 {
		return c
	}
	return compareCost(a, b)
}

func comparePreferReserved(a, b *candidate) int {
	if a.reserved != b.reserved {
		if a.reserved {
			return -1
		}
		return 1
	}
	return compareCost(a, b)
}
