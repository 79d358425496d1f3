package placementsim

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/haul-dev/haul/internal/placement"
)

// TasksPerDay is the number of tasks the teams submit in a simulated day
// at scale 1.
const TasksPerDay = 1_000_000_000

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
	day = 86400.0
)

// The resources the simulation accounts for, as vector indexes.
const (
	rCPU = iota
	rMem
	rA100
	rT4
	nRes
)

var resNames = [nRes]string{placement.ResCPU, placement.ResMemory, placement.GPUResource("a100"), placement.GPUResource("t4")}

// vec is an amount of each resource (CPU in milli-cores, memory in
// bytes, GPUs in devices), for the simulation's own accounting.
type vec [nRes]int64

func (v vec) add(o vec) vec {
	for i := range v {
		v[i] += o[i]
	}
	return v
}

func (v vec) sub(o vec) vec {
	for i := range v {
		v[i] -= o[i]
	}
	return v
}

// exceeds returns the index of the first resource of which v holds more
// than limit, or -1.
func (v vec) exceeds(limit vec) int {
	for i := range v {
		if v[i] > limit[i] {
			return i
		}
	}
	return -1
}

func (v vec) resources() placement.Resources {
	r := placement.Resources{MilliCPU: v[rCPU], Memory: v[rMem]}
	if v[rA100] != 0 || v[rT4] != 0 {
		r.GPU = map[string]int64{}
		if v[rA100] != 0 {
			r.GPU["a100"] = v[rA100]
		}
		if v[rT4] != 0 {
			r.GPU["t4"] = v[rT4]
		}
	}
	return r
}

// clusterSpec is one cluster of the scenario at scale 1.
type clusterSpec struct {
	name     string
	capacity vec
	pool     string  // node label pool=<pool>
	budget   float64 // pod creations per second
	delay    float64 // seconds from pod creation to the worker's first poll
}

// The fleet at scale 1: two CPU-only clusters, one with A100s and one
// with T4s; 48,192 cores in all.
var clusterSpecs = []clusterSpec{
	{name: "east", capacity: vec{24000_000, 96 * tib, 0, 0}, pool: "general", budget: 50, delay: 8},
	{name: "west", capacity: vec{16000_000, 64 * tib, 0, 0}, pool: "general", budget: 40, delay: 10},
	{name: "gpu-a100", capacity: vec{4096_000, 32 * tib, 512, 0}, pool: "accel", budget: 20, delay: 30},
	{name: "gpu-t4", capacity: vec{4096_000, 16 * tib, 0, 1024}, pool: "accel", budget: 30, delay: 15},
}

// Worker sizes.
var (
	sizeSmall = vec{1000, 2 * gib, 0, 0}
	sizeStd   = vec{2000, 4 * gib, 0, 0}
	sizeMem   = vec{4000, 32 * gib, 0, 0}
	sizeA100  = vec{8000, 64 * gib, 1, 0}
	sizeT4    = vec{4000, 16 * gib, 0, 1}
)

// teamSpec is one team of the scenario at scale 1.
type teamSpec struct {
	name  string
	share float64 // of the day's tasks
	// cores of CPU quota (0: no quota, the team only borrows); memory
	// and GPUs follow the worker size's proportions.
	cores int64
	lend  bool
	size  vec
	// selector: the team's tier asks for nodes of pool "general" (only
	// the CPU clusters have them); otherwise any cluster that has room.
	general bool
	// load is the team's mean demand, in worker-seconds over a day, as a
	// share of its quota (of 1,000 cores for a team without one).
	load     float64
	peak     float64 // hour of the day its submissions peak
	bursts   int     // bursts of submissions a day
	priority int32
	// westCores: a split, at most this many of its cores in west.
	westCores int64
}

// The 20 teams. Quotas sum to 47,056 of the fleet's 48,192 cores (most
// teams peak at 5 pm, so they cannot all have their quota at once); two
// teams have none and only borrow.
var teamSpecs = []teamSpec{
	{name: "search", share: 0.12, cores: 7000, lend: true, size: sizeStd, general: true, load: 0.45, peak: 17, bursts: 1, westCores: 3000},
	{name: "ads", share: 0.16, cores: 6000, lend: true, size: sizeSmall, general: true, load: 0.6, peak: 17, bursts: 2},
	{name: "feeds", share: 0.13, cores: 5000, size: sizeSmall, general: true, load: 0.5, peak: 17, bursts: 1},
	{name: "etl", share: 0.10, cores: 4000, lend: true, size: sizeStd, general: true, load: 0.6, peak: 2},
	{name: "fraud", share: 0.06, cores: 3000, size: sizeSmall, general: true, load: 0.4, peak: 17, bursts: 3, priority: 1},
	{name: "billing", share: 0.03, cores: 1500, lend: true, size: sizeStd, general: true, load: 0.4, peak: 9},
	{name: "genomics", share: 0.02, cores: 2500, lend: true, size: sizeMem, general: true, load: 0.5, peak: 14},
	{name: "video", share: 0.02, cores: 2500, lend: true, size: sizeStd, load: 0.5, peak: 19, bursts: 1},
	{name: "logs", share: 0.09, cores: 2000, lend: true, size: sizeSmall, general: true, load: 0.5, peak: 3},
	{name: "recsys", share: 0.0005, cores: 2048, size: sizeA100, load: 0.5, peak: 17},
	{name: "vision", share: 0.005, cores: 2048, lend: true, size: sizeT4, load: 0.45, peak: 17, bursts: 2},
	{name: "nlp", share: 0.0003, cores: 1024, lend: true, size: sizeA100, load: 0.4, peak: 11},
	{name: "speech", share: 0.003, cores: 1536, lend: true, size: sizeT4, load: 0.4, peak: 15},
	{name: "maps", share: 0.09, cores: 2000, lend: true, size: sizeSmall, general: true, load: 0.5, peak: 17},
	{name: "security", share: 0.035, cores: 1200, lend: true, size: sizeSmall, general: true, load: 0.4, peak: 17, bursts: 4},
	{name: "ci", share: 0.09, cores: 2000, size: sizeSmall, general: true, load: 0.5, peak: 15, bursts: 4},
	{name: "analytics", share: 0.01, cores: 1500, lend: true, size: sizeMem, general: true, load: 0.4, peak: 17},
	{name: "research", share: 0.02, size: sizeStd, general: true, load: 0.4, peak: 17, bursts: 1},
	{name: "interns", share: 0.005, cores: 200, lend: true, size: sizeSmall, general: true, load: 0.4, peak: 13},
	{name: "backfill", share: 0.0112, size: sizeSmall, load: 0.5, peak: 4},
}

// jobSpec is one job of the workload.
type jobSpec struct {
	team     int
	submit   float64 // seconds from the start of the simulation
	tasks    int64
	taskSecs float64 // mean run time of a task, at least 1
	feed     float64 // its tasks become ready evenly over this many seconds (0: all at submit)
	maxWork  int     // the job's max_workers (0: none)
}

// Job size classes: share of a team's jobs (by count), size range and how
// long its tasks run relative to the team's mean.
var jobClasses = []struct {
	share    float64
	min, max float64
	taskRel  float64
	feedMin  float64 // seconds; feedMax = 6 × feedMin
	maxWork  int
}{
	{share: 0.70, min: 3, max: 200, taskRel: 8},
	{share: 0.25, min: 200, max: 50_000, taskRel: 2, maxWork: 2000},
	{share: 0.05, min: 50_000, max: 1_000_000, taskRel: 0.8, feedMin: 600, maxWork: 8000},
}

// scaled returns x·scale rounded, at least floor (when x > 0).
func scaled(x float64, scale float64, floor int64) int64 {
	if x <= 0 {
		return 0
	}
	return max(int64(math.Round(x*scale)), floor)
}

// buildClusters returns the clusters at a scale: capacities and budgets
// shrink with it, down to room for a few of the largest workers and one
// pod a second.
func buildClusters(scale float64) []placement.Cluster {
	var cs []placement.Cluster
	for _, c := range clusterSpecs {
		v := vec{
			scaled(float64(c.capacity[rCPU]), scale, 4*sizeA100[rCPU]),
			scaled(float64(c.capacity[rMem]), scale, 4*sizeA100[rMem]) / mib * mib,
			scaled(float64(c.capacity[rA100]), scale, 4),
			scaled(float64(c.capacity[rT4]), scale, 4),
		}
		cs = append(cs, placement.Cluster{
			Name:          c.name,
			State:         placement.Enabled,
			Capacity:      v.resources(),
			Labels:        map[string][]string{"pool": {c.pool}},
			PodsPerSecond: math.Max(1, math.Round(c.budget*scale*10)/10),
		})
	}
	return cs
}

// buildQuotas returns the teams' quotas at a scale; a team without cores
// has none.
func buildQuotas(scale float64) []placement.Quota {
	var qs []placement.Quota
	for _, t := range teamSpecs {
		if t.cores == 0 {
			continue
		}
		q := placement.Quota{Team: t.name, Limit: quotaVec(t, t.cores, scale).resources(), Lend: t.lend}
		if t.westCores > 0 {
			q.Clusters = map[string]placement.Resources{"west": quotaVec(t, t.westCores, scale).resources()}
		}
		qs = append(qs, q)
	}
	return qs
}

// quotaVec is cores of CPU with memory and GPUs in the proportion of the
// team's worker size, at a scale, at least two workers' worth.
func quotaVec(t teamSpec, cores int64, scale float64) vec {
	workers := float64(cores*1000) / float64(t.size[rCPU])
	var v vec
	for r := range v {
		v[r] = scaled(workers*float64(t.size[r]), scale, 2*t.size[r])
	}
	v[rMem] = v[rMem] / mib * mib
	return v
}

// dayShape is the relative rate of a team's submissions at hour h: a
// floor all day and a bump three hours wide around the peak.
func dayShape(h, peak float64) float64 {
	d := math.Abs(h - peak)
	d = math.Min(d, 24-d)
	return 0.5 + math.Exp(-d*d/(2*3*3))
}

// genDay draws the jobs the teams submit on day d (0-based), each team
// filling its share of the day's tasks, sorted by submit time.
func genDay(seed int64, d int, scale float64) []jobSpec {
	var jobs []jobSpec
	for ti, t := range teamSpecs {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(d)<<16|uint64(ti)))
		jobs = append(jobs, genTeamDay(rng, ti, t, float64(d)*day, scale)...)
	}
	slices.SortStableFunc(jobs, func(a, b jobSpec) int { return cmp.Compare(a.submit, b.submit) })
	return jobs
}

func genTeamDay(rng *rand.Rand, ti int, t teamSpec, start, scale float64) []jobSpec {
	budget := int64(math.Round(t.share * TasksPerDay * scale))
	if budget < 1 {
		return nil
	}
	// Sizes: classes by count, log-uniform within a class, capped so that
	// a team has a few jobs even at small scales.
	capSize := max(1, float64(budget)/8)
	var jobs []jobSpec
	var total int64
	for total < budget {
		u := rng.Float64()
		ci := 0
		for acc := jobClasses[0].share; ci < len(jobClasses)-1 && u >= acc; {
			ci++
			acc += jobClasses[ci].share
		}
		c := jobClasses[ci]
		hi := math.Min(c.max, capSize)
		lo := math.Min(c.min, hi)
		n := int64(math.Round(lo * math.Exp(rng.Float64()*math.Log(hi/lo))))
		n = min(max(n, 1), budget-total)
		total += n
		j := jobSpec{team: ti, tasks: n, taskSecs: c.taskRel * (0.5 + rng.Float64()), maxWork: c.maxWork}
		if c.feedMin > 0 {
			j.feed = c.feedMin * (1 + 5*rng.Float64())
		}
		jobs = append(jobs, j)
	}
	// Task times: scale the relative ones so that the team's work over
	// the day is its load on its quota, then keep them between 1 s and
	// 10 min.
	cores := float64(t.cores)
	if cores == 0 {
		cores = 1000
	}
	workerSecs := t.load * float64(quotaVec(t, int64(cores), scale)[rCPU]) / float64(t.size[rCPU]) * day
	var rel float64
	for _, j := range jobs {
		rel += float64(j.tasks) * j.taskSecs
	}
	for i := range jobs {
		jobs[i].taskSecs = math.Min(600, math.Max(1, jobs[i].taskSecs*workerSecs/rel))
	}
	// Submit times: a share in bursts (ten minutes each), the rest drawn
	// from the daily shape by rejection.
	var centres []float64
	for range t.bursts {
		centres = append(centres, rng.Float64()*day)
	}
	for i := range jobs {
		if len(centres) > 0 && rng.Float64() < 0.15 {
			c := centres[rng.IntN(len(centres))]
			jobs[i].submit = start + math.Mod(c+rng.Float64()*600, day)
			continue
		}
		for {
			s := rng.Float64() * day
			if rng.Float64()*1.5 <= dayShape(s/3600, t.peak) {
				jobs[i].submit = start + math.Floor(s)
				break
			}
		}
	}
	for i := range jobs {
		jobs[i].submit = math.Floor(jobs[i].submit)
	}
	return jobs
}
