package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// CloudConfig says how the simulated cloud behaves.
type CloudConfig struct {
	// BootMin and BootMax bound a node's boot delay (from launch to
	// ready), drawn uniformly per node. Defaults: 60s and 180s.
	BootMin, BootMax time.Duration
	// SpotInterruptionPerHour is the hazard rate of a spot node: the
	// chance per node-hour that the cloud takes it back. A node's time to
	// interruption is exponential with this rate, counted from launch.
	SpotInterruptionPerHour float64
	// PriceStep is how often spot prices move (default 1h; negative: never).
	PriceStep time.Duration
	// PriceVolatility is the standard deviation of a step of a spot
	// price's logarithm; PriceReversion (0..1) pulls the price back to its
	// base each step. A spot price never exceeds the on-demand price of
	// the same type.
	PriceVolatility, PriceReversion float64
	// Shortages are periods during which Launch returns fewer instances.
	Shortages []Shortage
}

// Shortage is a period of insufficient capacity for the configs it matches.
type Shortage struct {
	// InstanceType, Zone and Purchase select configs; empty matches any.
	InstanceType string
	Zone         string
	Purchase     autoscale.Purchase
	// From and To are offsets from the start of the simulation.
	From, To time.Duration
	// PerLaunch is the most instances one Launch call gets during the
	// shortage; 0 means none at all.
	PerLaunch int
}

// DefaultCloudConfig returns boot delays of 60–180 s, a spot interruption
// hazard of 0.2% per node-hour, and hourly spot price moves of about 4%.
func DefaultCloudConfig() CloudConfig {
	return CloudConfig{
		BootMin:                 60 * time.Second,
		BootMax:                 180 * time.Second,
		SpotInterruptionPerHour: 0.002,
		PriceStep:               time.Hour,
		PriceVolatility:         0.04,
		PriceReversion:          0.1,
	}
}

// CloudEventKind is what happened in a CloudEvent.
type CloudEventKind uint8

const (
	// NodeReady: an instance finished booting.
	NodeReady CloudEventKind = iota + 1
	// NodeInterrupted: the cloud took a spot instance back.
	NodeInterrupted
	// PricesChanged: spot prices moved.
	PricesChanged
)

func (k CloudEventKind) String() string {
	switch k {
	case NodeReady:
		return "ready"
	case NodeInterrupted:
		return "interrupted"
	case PricesChanged:
		return "prices"
	}
	return "unknown"
}

// CloudEvent is something the cloud did on its own.
type CloudEvent struct {
	Kind     CloudEventKind
	At       time.Time
	Instance string // for NodeReady and NodeInterrupted
	Config   string
}

// Cloud is a simulated cloud. It implements autoscale.Provider in simulated
// time: Launch returns instances at once (fewer during a shortage), each
// becomes ready after its boot delay, spot instances may be interrupted,
// spot prices follow a mean-reverting random walk around their base, and
// the cloud bills every live instance its current price for the time it
// lives. Advance moves the clock. A Cloud is not safe for concurrent use.
type Cloud struct {
	start   time.Time
	cc      CloudConfig
	configs []autoscale.LaunchConfig
	byName  map[string]int
	odPrice []float64 // on-demand price of the same type: the spot cap
	price   []float64
	logDev  []float64 // log(price/base) of spot configs
	count   []int     // live instances per config
	short   [][]Shortage

	rng      *rand.Rand // boot delays and interruption times
	priceRng *rand.Rand // price moves: independent of the launches

	inst []instance
	byID map[string]int32
	q    eventQueue

	now       int64 // seconds since start
	cost      float64
	rate      float64
	rateDirty bool

	launched, interrupted int
}

type instance struct {
	id       string
	cfg      int32
	launched int64
	alive    bool
	ready    bool
}

const (
	evReady uint8 = iota + 1
	evInterrupt
	evPrice
)

// NewCloud returns a cloud offering configs, starting at start, with its
// randomness seeded by seed.
func NewCloud(configs []autoscale.LaunchConfig, cc CloudConfig, seed int64, start time.Time) (*Cloud, error) {
	if len(configs) == 0 {
		return nil, errors.New("new cloud: no launch configs")
	}
	if cc.BootMin < 0 || cc.BootMax < cc.BootMin {
		return nil, fmt.Errorf("new cloud: boot delay range [%v, %v] is invalid", cc.BootMin, cc.BootMax)
	}
	if cc.SpotInterruptionPerHour < 0 || math.IsNaN(cc.SpotInterruptionPerHour) {
		return nil, fmt.Errorf("new cloud: SpotInterruptionPerHour %v is negative", cc.SpotInterruptionPerHour)
	}
	if cc.PriceReversion < 0 || cc.PriceReversion > 1 || cc.PriceVolatility < 0 {
		return nil, fmt.Errorf("new cloud: PriceReversion %v must be in [0, 1] and PriceVolatility %v not negative", cc.PriceReversion, cc.PriceVolatility)
	}
	c := &Cloud{
		start:    start,
		cc:       cc,
		configs:  configs,
		byName:   make(map[string]int, len(configs)),
		odPrice:  make([]float64, len(configs)),
		price:    make([]float64, len(configs)),
		logDev:   make([]float64, len(configs)),
		count:    make([]int, len(configs)),
		short:    make([][]Shortage, len(configs)),
		rng:      rand.New(rand.NewPCG(uint64(seed), 0xc10d)),
		priceRng: rand.New(rand.NewPCG(uint64(seed), 0x9219ce)),
		byID:     make(map[string]int32),
	}
	for i := range configs {
		cfg := &configs[i]
		if cfg.Name == "" {
			return nil, fmt.Errorf("new cloud: launch config %d has no name", i)
		}
		if _, dup := c.byName[cfg.Name]; dup {
			return nil, fmt.Errorf("new cloud: launch config %q is listed twice", cfg.Name)
		}
		if cfg.PricePerHour < 0 || math.IsNaN(cfg.PricePerHour) {
			return nil, fmt.Errorf("new cloud: launch config %q: PricePerHour %v is negative", cfg.Name, cfg.PricePerHour)
		}
		c.byName[cfg.Name] = i
		c.price[i] = cfg.PricePerHour
		c.odPrice[i] = math.Inf(1)
	}
	for i := range configs {
		if configs[i].Purchase != autoscale.OnDemand {
			continue
		}
		for j := range configs {
			if configs[j].Purchase == autoscale.Spot && configs[j].InstanceType == configs[i].InstanceType {
				c.odPrice[j] = min(c.odPrice[j], configs[i].PricePerHour)
			}
		}
	}
	for si, s := range cc.Shortages {
		if s.To < s.From || s.PerLaunch < 0 {
			return nil, fmt.Errorf("new cloud: shortage %d: need From <= To and PerLaunch >= 0", si)
		}
		for i := range configs {
			cfg := &configs[i]
			if (s.InstanceType == "" || s.InstanceType == cfg.InstanceType) &&
				(s.Zone == "" || s.Zone == cfg.Zone) &&
				(s.Purchase == "" || s.Purchase == cfg.Purchase) {
				c.short[i] = append(c.short[i], s)
			}
		}
	}
	if cc.PriceStep > 0 {
		c.q.push(event{at: seconds(cc.PriceStep), kind: evPrice})
	}
	return c, nil
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// Now is the simulated time.
func (c *Cloud) Now() time.Time { return c.start.Add(time.Duration(c.now) * time.Second) }

// Cost is what the instances have cost so far, in dollars.
func (c *Cloud) Cost() float64 { return c.cost }

// SpendRate is the current cost per hour of the live instances.
func (c *Cloud) SpendRate() float64 {
	if c.rateDirty {
		r := 0.0
		for i, n := range c.count {
			if n > 0 {
				r += float64(n) * c.price[i]
			}
		}
		c.rate = r
		c.rateDirty = false
	}
	return c.rate
}

// Live is the number of live (booting or ready) instances.
func (c *Cloud) Live() int {
	n := 0
	for _, k := range c.count {
		n += k
	}
	return n
}

// Launch asks for count instances of cfg (by name, one of the cloud's
// configs). During a shortage of cfg it returns at most the shortage's
// PerLaunch instances, without an error.
func (c *Cloud) Launch(ctx context.Context, cfg autoscale.LaunchConfig, count int) ([]autoscale.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("launch %s: %w", cfg.Name, err)
	}
	ci, ok := c.byName[cfg.Name]
	if !ok {
		return nil, fmt.Errorf("launch: unknown launch config %q", cfg.Name)
	}
	if count < 0 {
		return nil, fmt.Errorf("launch %s: negative count %d", cfg.Name, count)
	}
	count = min(count, c.available(ci))
	if count == 0 {
		return nil, nil
	}
	out := make([]autoscale.Instance, count)
	spot := c.configs[ci].Purchase == autoscale.Spot
	boot := seconds(c.cc.BootMax) - seconds(c.cc.BootMin)
	for k := range out {
		idx := int32(len(c.inst))
		id := "i-" + strconv.Itoa(int(idx)+1)
		c.inst = append(c.inst, instance{id: id, cfg: int32(ci), launched: c.now, alive: true})
		c.byID[id] = idx
		delay := seconds(c.cc.BootMin)
		if boot > 0 {
			delay += c.rng.Int64N(boot + 1)
		}
		c.q.push(event{at: c.now + delay, kind: evReady, idx: idx})
		if spot && c.cc.SpotInterruptionPerHour > 0 {
			life := c.rng.ExpFloat64() / c.cc.SpotInterruptionPerHour * 3600
			if life < float64(math.MaxInt64/4) {
				c.q.push(event{at: c.now + 1 + int64(life), kind: evInterrupt, idx: idx})
			}
		}
		out[k] = autoscale.Instance{ID: id, Config: cfg.Name, LaunchedAt: c.Now()}
	}
	c.count[ci] += count
	c.rateDirty = true
	c.launched += count
	return out, nil
}

// available is how many instances a Launch of config ci may get now.
func (c *Cloud) available(ci int) int {
	n := math.MaxInt
	for _, s := range c.short[ci] {
		if c.now >= seconds(s.From) && c.now < seconds(s.To) {
			n = min(n, s.PerLaunch)
		}
	}
	return n
}

// Terminate terminates instances. Terminating one that is already gone
// does nothing; an unknown ID is an error (the others are terminated).
func (c *Cloud) Terminate(ctx context.Context, ids []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("terminate: %w", err)
	}
	var errs []error
	for _, id := range ids {
		idx, ok := c.byID[id]
		if !ok {
			errs = append(errs, fmt.Errorf("terminate: unknown instance %q", id))
			continue
		}
		c.kill(idx)
	}
	return errors.Join(errs...)
}

func (c *Cloud) kill(idx int32) bool {
	in := &c.inst[idx]
	if !in.alive {
		return false
	}
	in.alive = false
	c.count[in.cfg]--
	c.rateDirty = true
	return true
}

// Prices returns the current prices of the spot configs among configs (all
// spot configs when configs is empty). An unknown config is an error.
func (c *Cloud) Prices(ctx context.Context, configs []autoscale.LaunchConfig) (map[string]float64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("prices: %w", err)
	}
	out := make(map[string]float64)
	if len(configs) == 0 {
		for i := range c.configs {
			if c.configs[i].Purchase == autoscale.Spot {
				out[c.configs[i].Name] = c.price[i]
			}
		}
		return out, nil
	}
	for _, cfg := range configs {
		i, ok := c.byName[cfg.Name]
		if !ok {
			return nil, fmt.Errorf("prices: unknown launch config %q", cfg.Name)
		}
		if c.configs[i].Purchase == autoscale.Spot {
			out[cfg.Name] = c.price[i]
		}
	}
	return out, nil
}

// Advance moves the clock to t, processing the cloud's events on the way
// in time order and reporting each to on (which may be nil). It is for a
// Cloud used on its own: a Sim advances its cloud itself.
func (c *Cloud) Advance(t time.Time, on func(CloudEvent)) {
	to := seconds(t.Sub(c.start))
	for {
		at, ok := c.q.peek()
		if !ok || at > to {
			break
		}
		if ev, ok := c.step(); ok && on != nil {
			on(ev)
		}
	}
	c.advanceClock(to)
}

// nextAt is the time of the cloud's next event.
func (c *Cloud) nextAt() (int64, bool) { return c.q.peek() }

// advanceClock bills the live instances up to t.
func (c *Cloud) advanceClock(t int64) {
	if t <= c.now {
		return
	}
	c.cost += c.SpendRate() * float64(t-c.now) / 3600
	c.now = t
}

// step processes the earliest event; ok is false for a stale one (the
// instance was terminated before it booted or was interrupted).
func (c *Cloud) step() (CloudEvent, bool) {
	e := c.q.pop()
	c.advanceClock(e.at)
	switch e.kind {
	case evReady:
		in := &c.inst[e.idx]
		if !in.alive {
			return CloudEvent{}, false
		}
		in.ready = true
		return CloudEvent{Kind: NodeReady, At: c.Now(), Instance: in.id, Config: c.configs[in.cfg].Name}, true
	case evInterrupt:
		if !c.kill(e.idx) {
			return CloudEvent{}, false
		}
		c.interrupted++
		in := &c.inst[e.idx]
		return CloudEvent{Kind: NodeInterrupted, At: c.Now(), Instance: in.id, Config: c.configs[in.cfg].Name}, true
	case evPrice:
		c.movePrices()
		c.q.push(event{at: c.now + seconds(c.cc.PriceStep), kind: evPrice})
		return CloudEvent{Kind: PricesChanged, At: c.Now()}, true
	}
	return CloudEvent{}, false
}

// interruptAt schedules the interruption of instance idx at t (tests).
func (c *Cloud) interruptAt(idx int32, t int64) {
	c.q.push(event{at: t, kind: evInterrupt, idx: idx})
}

// movePrices takes one step of every spot price's random walk: the log of
// price/base reverts towards 0 and moves by a normal step.
func (c *Cloud) movePrices() {
	for i := range c.configs {
		cfg := &c.configs[i]
		if cfg.Purchase != autoscale.Spot {
			continue
		}
		d := c.logDev[i]*(1-c.cc.PriceReversion) + c.priceRng.NormFloat64()*c.cc.PriceVolatility
		c.logDev[i] = d
		c.price[i] = min(cfg.PricePerHour*math.Exp(d), c.odPrice[i])
	}
	c.rateDirty = true
}
