package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// benchFleet is 4 clusters and 20 teams (half lending) holding 10,000
// reservations, a third of them borrowed, and a batch of 1,000 requests
// from every team, some with GPUs.
func benchFleet() (*Snapshot, []Request) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := &Snapshot{}
	for i := range 4 {
		s.Clusters = append(s.Clusters, Cluster{
			Name: fmt.Sprintf("c%d", i), State: Enabled,
			Capacity: Resources{MilliCPU: 20_000_000, Memory: 80_000 << 30, GPU: map[string]int64{"a100": 2000, "t4": 2000}},
		})
	}
	for i := range 20 {
		s.Quotas = append(s.Quotas, Quota{
			Team: fmt.Sprintf("t%02d", i), Lend: i%2 == 0,
			Limit: Resources{MilliCPU: 3_000_000, Memory: 12_000 << 30, GPU: map[string]int64{"a100": 300, "t4": 300}},
		})
	}
	now := time.Unix(1_000_000, 0)
	usage := map[usageKey]*Usage{}
	for i := range 10_000 {
		team, cluster := fmt.Sprintf("t%02d", rng.IntN(20)), fmt.Sprintf("c%d", rng.IntN(4))
		r := Reservation{ID: fmt.Sprintf("r%d", i), Team: team, Job: "j", Cluster: cluster,
			Resources: Resources{MilliCPU: 2000, Memory: 8 << 30}, Borrowed: i%3 == 0, Created: now.Add(-time.Duration(i) * time.Second)}
		if i%10 == 0 {
			r.Resources.GPU = map[string]int64{"a100": 1}
		}
		k := usageKey{team, cluster, r.Borrowed}
		if usage[k] == nil {
			usage[k] = &Usage{Team: team, Cluster: cluster, Borrowed: r.Borrowed}
		}
		usage[k].Held = usage[k].Held.Add(r.Resources)
		usage[k].Workers++
		if r.Borrowed {
			s.Borrowed = append(s.Borrowed, r)
		}
	}
	for _, u := range usage {
		s.Usage = append(s.Usage, *u)
	}
	slices.SortFunc(s.Usage, func(a, b Usage) int {
		return cmpUsage(a, b)
	})
	var reqs []Request
	for i := range 1000 {
		req := Request{ID: fmt.Sprintf("w%d", i), Team: fmt.Sprintf("t%02d", rng.IntN(20)), Job: "j",
			Resources: Resources{MilliCPU: 1000, Memory: 4 << 30}}
		if i%5 == 0 {
			req.Resources.GPU = map[string]int64{[]string{"a100", "t4"}[i%2]: 1}
		}
		reqs = append(reqs, req)
	}
	return s, reqs
}

func cmpUsage(a, b Usage) int {
	switch {
	case a.Team != b.Team:
		return compareStrings(a.Team, b.Team)
	case a.Cluster != b.Cluster:
		return compareStrings(a.Cluster, b.Cluster)
	case a.Borrowed != b.Borrowed:
		if a.Borrowed {
			return 1
		}
		return -1
	}
	return 0
}

func compareStrings(a, b string) int {
	if a < b {
		return -1
	}
	return 1
}

// BenchmarkPlace decides a batch of 1,000 requests over 4 clusters, 20
// teams and the usage of 10,000 reservations (what one store transaction
// does for a busy runner), copying the snapshot each time.
func BenchmarkPlace(b *testing.B) {
	base, reqs := benchFleet()
	now := time.Unix(2_000_000, 0)
	b.ReportAllocs()
	placed := 0
	for b.Loop() {
		s := copySnapshot(base)
		results, _ := Place(s, reqs, now)
		placed = 0
		for _, r := range results {
			if r.Placed {
				placed++
			}
		}
	}
	if placed == 0 {
		b.Fatal("the benchmark placed nothing")
	}
	b.ReportMetric(float64(placed), "placed/op")
}

// BenchmarkRebalance checks the same fleet's pool and draining cluster.
func BenchmarkRebalance(b *testing.B) {
	base, _ := benchFleet()
	base.Clusters[0].State = Draining
	b.ReportAllocs()
	for b.Loop() {
		Rebalance(copySnapshot(base))
	}
}
