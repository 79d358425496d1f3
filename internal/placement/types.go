package placement

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Resources is an amount of CPU, memory and GPUs by type. Amounts are
// integers so that sums are exact: CPU in thousandths of a core, memory
// in bytes, GPUs in whole devices keyed by their type ("a100", "t4").
// A nil or empty GPU map means no GPUs; zero entries are ignored.
type Resources struct {
	MilliCPU int64            `json:"milli_cpu,omitempty"`
	Memory   int64            `json:"memory,omitempty"`
	GPU      map[string]int64 `json:"gpu,omitempty"`
}

// Resource names used in blockers and reports: "cpu", "memory" and
// "gpu/<type>".
const (
	ResCPU    = "cpu"
	ResMemory = "memory"
	resGPU    = "gpu/"
)

// GPUResource is the resource name of a GPU type: "gpu/<type>".
func GPUResource(typ string) string { return resGPU + typ }

// Names lists the resources r has a non-zero amount of, cpu and memory
// first, then GPU types in order.
func (r Resources) Names() []string {
	var out []string
	if r.MilliCPU != 0 {
		out = append(out, ResCPU)
	}
	if r.Memory != 0 {
		out = append(out, ResMemory)
	}
	for _, t := range slices.Sorted(maps.Keys(r.GPU)) {
		if r.GPU[t] != 0 {
			out = append(out, GPUResource(t))
		}
	}
	return out
}

// Get returns the amount of the named resource (0 for an unknown name).
func (r Resources) Get(name string) int64 {
	switch {
	case name == ResCPU:
		return r.MilliCPU
	case name == ResMemory:
		return r.Memory
	case strings.HasPrefix(name, resGPU):
		return r.GPU[strings.TrimPrefix(name, resGPU)]
	}
	return 0
}

// Add returns r + o. It never changes r or o.
func (r Resources) Add(o Resources) Resources {
	out := Resources{MilliCPU: r.MilliCPU + o.MilliCPU, Memory: r.Memory + o.Memory}
	for t, n := range r.GPU {
		out.addGPU(t, n)
	}
	for t, n := range o.GPU {
		out.addGPU(t, n)
	}
	return out
}

// Sub returns r - o (amounts may go below zero). It never changes r or o.
func (r Resources) Sub(o Resources) Resources {
	neg := Resources{MilliCPU: -o.MilliCPU, Memory: -o.Memory}
	for t, n := range o.GPU {
		neg.addGPU(t, -n)
	}
	return r.Add(neg)
}

func (r *Resources) addGPU(t string, n int64) {
	if n == 0 {
		return
	}
	if r.GPU == nil {
		r.GPU = map[string]int64{}
	}
	r.GPU[t] += n
	if r.GPU[t] == 0 {
		delete(r.GPU, t)
	}
}

// IsZero reports whether r holds nothing.
func (r Resources) IsZero() bool {
	if r.MilliCPU != 0 || r.Memory != 0 {
		return false
	}
	for _, n := range r.GPU {
		if n != 0 {
			return false
		}
	}
	return true
}

// Exceeds returns the first resource (in Names order of r) of which r
// holds more than limit, or "" when r fits within limit. A GPU type limit
// does not list counts as 0.
func (r Resources) Exceeds(limit Resources) string {
	for _, name := range r.Names() {
		if r.Get(name) > limit.Get(name) {
			return name
		}
	}
	return ""
}

// String formats r as "cpu=2 memory=4Gi gpu/a100=1" (empty: "0").
func (r Resources) String() string {
	var parts []string
	for _, name := range r.Names() {
		parts = append(parts, name+"="+FormatAmount(name, r.Get(name)))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " ")
}

// FormatAmount formats an amount of the named resource: CPU in cores
// ("2", "0.5"), memory with a binary suffix when exact ("4Gi"), GPUs as a
// count.
func FormatAmount(name string, n int64) string {
	switch name {
	case ResCPU:
		// Integer arithmetic, so that every amount prints exactly.
		sign, u := "", uint64(n)
		if n < 0 {
			sign, u = "-", -u
		}
		whole := sign + strconv.FormatUint(u/1000, 10)
		if u%1000 == 0 {
			return whole
		}
		return whole + "." + strings.TrimRight(fmt.Sprintf("%03d", u%1000), "0")
	case ResMemory:
		for _, u := range []struct {
			s string
			n int64
		}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
			if n != 0 && n%u.n == 0 {
				return strconv.FormatInt(n/u.n, 10) + u.s
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// ClusterState says whether a cluster gets new workers.
type ClusterState string

const (
	// Enabled: new workers may be placed here.
	Enabled ClusterState = "enabled"
	// Disabled: no new workers; the ones there keep running their tasks
	// and are retired as usual.
	Disabled ClusterState = "disabled"
	// Draining: no new workers, and the ones there finish their current
	// task and exit.
	Draining ClusterState = "draining"
)

// ParseClusterState reads "enabled", "disabled" or "draining".
func ParseClusterState(s string) (ClusterState, error) {
	switch ClusterState(s) {
	case Enabled, Disabled, Draining:
		return ClusterState(s), nil
	}
	return "", fmt.Errorf("cluster state %q: want enabled, disabled or draining", s)
}

// Cluster is one place workers run: a Kubernetes cluster, or this
// machine for the local backend.
type Cluster struct {
	Name  string       `json:"name"`
	State ClusterState `json:"state"`
	// Capacity is what haul's workers may hold there in total. Its GPU
	// keys are the GPU types the cluster offers. A zero amount of CPU or
	// memory means the cluster offers none.
	Capacity Resources `json:"capacity"`
	// Labels are the node label values present in the cluster, for
	// matching a tier's node selector: a selector key=value is satisfied
	// when Labels[key] lists value. Nil: not known, any selector matches.
	Labels map[string][]string `json:"labels,omitempty"`
	// PodsPerSecond is the worker creations per second the cluster's API
	// server is budgeted for (0: not set). Reports compare against it.
	PodsPerSecond float64 `json:"pods_per_second,omitempty"`
	// Prices per hour, for cost: per core, per GiB of memory and per GPU
	// of each type. A worker costs its reservation times these.
	PricePerCPUHour float64            `json:"price_per_cpu_hour,omitempty"`
	PricePerGiBHour float64            `json:"price_per_gib_hour,omitempty"`
	PricePerGPUHour map[string]float64 `json:"price_per_gpu_hour,omitempty"`
}

// Matches reports whether a node selector can be satisfied in c.
func (c Cluster) Matches(selector map[string]string) bool {
	if c.Labels == nil {
		return true
	}
	for k, v := range selector {
		if !slices.Contains(c.Labels[k], v) {
			return false
		}
	}
	return true
}

// HourlyPrice is what a worker holding r costs per hour in c.
func (c Cluster) HourlyPrice(r Resources) float64 {
	p := float64(r.MilliCPU)/1000*c.PricePerCPUHour + float64(r.Memory)/(1<<30)*c.PricePerGiBHour
	for t, n := range r.GPU {
		p += float64(n) * c.PricePerGPUHour[t]
	}
	return p
}

// Quota is a team's guaranteed share of the fleet.
type Quota struct {
	Team string `json:"team"`
	// Limit is what the team's own (not borrowed) workers may hold across
	// all clusters together.
	Limit Resources `json:"limit"`
	// Clusters optionally splits the limit: the team's own workers in a
	// cluster named here hold at most its amount there (the total still
	// counts against Limit). Clusters not named are bounded by Limit only.
	Clusters map[string]Resources `json:"clusters,omitempty"`
	// Lend lets other teams borrow the part of Limit this team does not
	// use. Borrowed capacity goes back when the team needs it: the
	// borrowing workers finish their current task and exit.
	Lend bool `json:"lend"`
}

// Usage is what the reservations of one team in one cluster hold,
// split by whether they are borrowed.
type Usage struct {
	Team     string    `json:"team"`
	Cluster  string    `json:"cluster"`
	Borrowed bool      `json:"borrowed"`
	Held     Resources `json:"held"`
	Workers  int       `json:"workers"`
}

// Reservation is one worker's hold on a team's quota (or borrowed
// capacity) and a cluster's capacity, from its start until it exits.
type Reservation struct {
	// ID is the worker's ID.
	ID        string    `json:"id"`
	Team      string    `json:"team"`
	Job       string    `json:"job"`
	Cluster   string    `json:"cluster"`
	Resources Resources `json:"resources"`
	// Borrowed: held on capacity lent by other teams, not the team's own
	// quota.
	Borrowed bool `json:"borrowed"`
	// Reclaim: the capacity is wanted back (by its owner, or a cluster
	// draining): the worker finishes its current task and exits.
	Reclaim bool `json:"reclaim"`
	// Holder is the runner that renews it; ExpiresAt is when it is
	// reclaimed unless renewed (a dead runner's, a lost worker's).
	Holder    string    `json:"holder"`
	Created   time.Time `json:"created"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Request asks for one worker's reservation.
type Request struct {
	// ID is the worker's ID, which becomes the reservation's.
	ID   string
	Team string
	Job  string
	// Priority and Created order requests of one team in a batch (higher
	// priority first, then older).
	Priority int32
	Created  time.Time
	// Resources is the worker's tier: CPU, memory and its GPUs of one
	// type.
	Resources Resources
	// NodeSelector is the tier's node selector: only clusters whose nodes
	// can satisfy it are considered.
	NodeSelector map[string]string
	// Clusters lists the clusters the asking runner's backend can start
	// workers in; nil or empty: any.
	Clusters []string
	// ClaimOnly: the runner has no slot to start this worker now (its
	// worker cap is used up), but asks for the room its team is owed: the
	// request is never placed. If it would be placed, the Result says so
	// with an empty Blocker kind; if it is owned and borrowed workers hold
	// the room, they are marked and a claim is made, as for any request.
	ClaimOnly bool
}

// Snapshot is what placement decides against: every cluster and quota,
// the usage of all live reservations, the borrowed reservations
// themselves (the candidates for reclaim) and the live claims.
// Reservations and claims that expired are not in it.
type Snapshot struct {
	Clusters []Cluster
	Quotas   []Quota
	Usage    []Usage
	Borrowed []Reservation
	Claims   []Claim

	// Set by Place, for the caller to write with the reservations: the
	// claims it made (ClaimsMade, also appended to Claims) and the IDs of
	// those it dropped (ClaimsDropped, also removed from Claims).
	ClaimsMade    []Claim
	ClaimsDropped []string
}

// Claim holds room for a team owed it. An owned request (within its
// team's quota) that finds the room it needs held by borrowed workers
// marks them for reclaim and leaves a claim on that room: until the claim
// expires or its job asks again, the room those workers free is kept for
// the claiming team (no other team is placed on it, and the claiming
// team lends that much less), so that the owner, not another borrower,
// gets it back.
type Claim struct {
	// ID is the refused request's (worker's) ID.
	ID        string    `json:"id"`
	Team      string    `json:"team"`
	Job       string    `json:"job"`
	Cluster   string    `json:"cluster"`
	Resources Resources `json:"resources"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ClaimTTL is how long a claim lasts: its job asks again (a second later,
// at the runner's hold) well before, which replaces it.
const ClaimTTL = 5 * time.Second

// BlockerKind names what keeps a worker from being placed.
type BlockerKind string

const (
	// BlockInvalid: the request itself is malformed (no team, negative
	// amounts, GPUs of more than one type).
	BlockInvalid BlockerKind = "invalid"
	// BlockQuota: the team's quota is used up and nothing can be borrowed.
	BlockQuota BlockerKind = "quota"
	// BlockNoCluster: no cluster offers what the tier asks (its GPU type,
	// node selector, or more than a whole cluster's capacity).
	BlockNoCluster BlockerKind = "no-cluster"
	// BlockUnavailable: the clusters that could run it are disabled or
	// draining.
	BlockUnavailable BlockerKind = "unavailable"
	// BlockCapacity: the clusters that could run it are full.
	BlockCapacity BlockerKind = "capacity"
	// BlockReclaiming: the team is within its quota but the room is held
	// by borrowed workers, which were asked to give it back.
	BlockReclaiming BlockerKind = "reclaiming"
)

// Blocker says exactly why a request was refused.
type Blocker struct {
	Kind BlockerKind `json:"kind"`
	// Resource, Used and Limit: the resource that ran out, with what is
	// held and the bound (quota or capacity), for BlockQuota and
	// BlockCapacity.
	Resource string `json:"resource,omitempty"`
	Used     int64  `json:"used,omitempty"`
	Limit    int64  `json:"limit,omitempty"`
	// Clusters are the clusters concerned (disabled, draining, full).
	Clusters []string `json:"clusters,omitempty"`
	// Detail is the whole reason as a sentence.
	Detail string `json:"detail"`
}

func (b Blocker) String() string { return b.Detail }

// Result is the answer to one Request.
type Result struct {
	ID string
	// Placed: Reservation is set (Cluster, Borrowed); else Blocker says
	// why not.
	Placed      bool
	Reservation Reservation
	Blocker     Blocker
}

// Errors of bad input.
var ErrBadInput = errors.New("placement: bad input")

// byName orders clusters by name.
func byName(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) }
