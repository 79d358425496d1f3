package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/haul-dev/haul/internal/autoscale"
)

// bundle is what a provider test needs: a provider on the shared moto
// server, a raw client to check what it did, and the test's own launch
// template and tags.
type bundle struct {
	ctx      context.Context
	raw      *ec2.Client
	cfg      Config
	prov     *Provider
	template string
	now      time.Time
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// setup creates a launch template for the test in moto and a provider
// whose instances carry the tag haul:test=<test name>. mod adjusts the
// provider's config; wrap, when set, puts a fake in front of the moto
// client.
func setup(t *testing.T, mod func(*Config), wrap func(EC2API) EC2API) *bundle {
	t.Helper()
	ctx := testContext(t)
	raw := motoClient(t)
	// Unique per setup: one moto server serves the whole test binary, and
	// -count=N runs each test again against it.
	name := fmt.Sprintf("%s-%d", safeName(t.Name()), setupSeq.Add(1))
	image := motoImage(t, ctx, raw)
	_, err := raw.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: awssdk.String(name),
		LaunchTemplateData: &types.RequestLaunchTemplateData{
			ImageId:      awssdk.String(image),
			InstanceType: types.InstanceTypeT3Micro,
		},
	})
	if err != nil {
		t.Fatalf("create launch template %s: %v", name, err)
	}
	b := &bundle{ctx: ctx, raw: raw, template: name, now: testNow}
	b.cfg = Config{
		Region:                motoRegion,
		Endpoint:              motoEndpoint(t),
		DefaultLaunchTemplate: name,
		Tags:                  map[string]string{"haul:test": name, "team": "batch"},
		OnDemandPrices:        map[string]float64{"m5.large": 0.096, "c5.xlarge": 0.17},
		Logger:                slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Now:                   func() time.Time { return testNow },
	}
	if mod != nil {
		mod(&b.cfg)
	}
	if wrap == nil {
		b.prov, err = New(ctx, b.cfg, staticCredentials)
	} else {
		b.prov, err = NewWithClient(wrap(raw), b.cfg)
	}
	if err != nil {
		t.Fatalf("new provider: %v", err)
	}
	return b
}

// testWriter sends the provider's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// safeName turns a test name into a launch template name and tag value.
var setupSeq atomic.Int64

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, s)
}

var image struct {
	once sync.Once
	id   string
	err  error
}

// motoImage returns the ID of an AMI moto ships with.
func motoImage(t *testing.T, ctx context.Context, raw *ec2.Client) string {
	t.Helper()
	image.once.Do(func() {
		out, err := raw.DescribeImages(ctx, &ec2.DescribeImagesInput{
			Filters: []types.Filter{{Name: awssdk.String("architecture"), Values: []string{"x86_64"}}},
		})
		if err != nil {
			image.err = err
			return
		}
		for _, img := range out.Images {
			if img.Platform == "" { // a Linux image
				image.id = awssdk.ToString(img.ImageId)
				return
			}
		}
		image.err = errNoImage
	})
	if image.err != nil {
		t.Fatalf("find an AMI in moto: %v", image.err)
	}
	return image.id
}

// describe returns the instances by ID, as moto sees them.
func describe(t *testing.T, b *bundle, ids []string) map[string]types.Instance {
	t.Helper()
	out, err := b.raw.DescribeInstances(b.ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatalf("describe instances %v: %v", ids, err)
	}
	m := map[string]types.Instance{}
	for _, r := range out.Reservations {
		for _, inst := range r.Instances {
			m[awssdk.ToString(inst.InstanceId)] = inst
		}
	}
	return m
}

func tagsOf(inst types.Instance) map[string]string {
	m := map[string]string{}
	for _, tag := range inst.Tags {
		m[awssdk.ToString(tag.Key)] = awssdk.ToString(tag.Value)
	}
	return m
}

func idsOf(insts []autoscale.Instance) []string {
	ids := make([]string, len(insts))
	for i, inst := range insts {
		ids[i] = inst.ID
	}
	sort.Strings(ids)
	return ids
}

func onDemand(name, instanceType string) autoscale.LaunchConfig {
	return autoscale.LaunchConfig{Name: name, InstanceType: instanceType, Zone: "us-east-1a", Purchase: autoscale.OnDemand}
}

func spot(name, instanceType string) autoscale.LaunchConfig {
	return autoscale.LaunchConfig{Name: name, InstanceType: instanceType, Zone: "us-east-1b", Purchase: autoscale.Spot}
}

// checkLaunched checks that moto has the instances running, of the type,
// with the provider's tags and haul:config.
func checkLaunched(t *testing.T, b *bundle, got []autoscale.Instance, lc autoscale.LaunchConfig, instanceType string, lifecycle types.InstanceLifecycleType) {
	t.Helper()
	seen := describe(t, b, idsOf(got))
	for _, g := range got {
		if g.Config != lc.Name {
			t.Errorf("instance %s: config %q, want %q", g.ID, g.Config, lc.Name)
		}
		if !g.LaunchedAt.Equal(b.now) {
			t.Errorf("instance %s: launched at %v, want the provider's clock %v", g.ID, g.LaunchedAt, b.now)
		}
		inst, ok := seen[g.ID]
		if !ok {
			t.Errorf("instance %s: not in DescribeInstances", g.ID)
			continue
		}
		if s := inst.State.Name; s != types.InstanceStateNameRunning && s != types.InstanceStateNamePending {
			t.Errorf("instance %s: state %s, want running or pending", g.ID, s)
		}
		if inst.InstanceType != types.InstanceType(instanceType) {
			t.Errorf("instance %s: type %s, want %s", g.ID, inst.InstanceType, instanceType)
		}
		if inst.InstanceLifecycle != lifecycle {
			t.Errorf("instance %s: lifecycle %q, want %q", g.ID, inst.InstanceLifecycle, lifecycle)
		}
		tags := tagsOf(inst)
		want := map[string]string{ConfigTag: lc.Name}
		for k, v := range b.cfg.Tags {
			want[k] = v
		}
		for k, v := range want {
			if tags[k] != v {
				t.Errorf("instance %s: tag %s=%q, want %q (tags %v)", g.ID, k, tags[k], v, tags)
			}
		}
	}
}

func TestLaunchOnDemand(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	lc := onDemand("m5.large/us-east-1a/on-demand", "m5.large")
	got, err := b.prov.Launch(b.ctx, lc, 3)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("launch 3: got %d instances (%v)", len(got), got)
	}
	checkLaunched(t, b, got, lc, "m5.large", "")

	if got, err := b.prov.Launch(b.ctx, lc, 0); err != nil || len(got) != 0 {
		t.Errorf("launch 0: %v, %v; want nothing and no error", got, err)
	}
}

func TestLaunchByTemplateID(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	out, err := b.raw.DescribeLaunchTemplates(b.ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{b.template}})
	if err != nil || len(out.LaunchTemplates) != 1 {
		t.Fatalf("describe launch template %s: %v, %v", b.template, out, err)
	}
	id := awssdk.ToString(out.LaunchTemplates[0].LaunchTemplateId)
	lc := onDemand("by-id", "c5.xlarge")
	cfg := b.cfg
	cfg.DefaultLaunchTemplate = ""
	cfg.LaunchTemplates = map[string]string{lc.Name: id}
	cfg.LaunchTemplateVersion = "$Latest"
	p, err := New(b.ctx, cfg, staticCredentials)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Launch(b.ctx, lc, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("launch 1 from template %s: %v, %v", id, got, err)
	}
	checkLaunched(t, b, got, lc, "c5.xlarge", "")

	_, err = p.Launch(b.ctx, onDemand("not-mapped", "c5.xlarge"), 1)
	if err == nil || !strings.Contains(err.Error(), "no launch template") {
		t.Errorf("launch of a config with no template: %v, want a 'no launch template' error", err)
	}
}

func TestLaunchSpot(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	lc := spot("c5.xlarge/us-east-1b/spot", "c5.xlarge")
	got, err := b.prov.Launch(b.ctx, lc, 2)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("launch 2 spot: got %d instances (%v)", len(got), got)
	}
	checkLaunched(t, b, got, lc, "c5.xlarge", types.InstanceLifecycleTypeSpot)
}

// TestLaunchIntoSubnet launches a config into the subnet Config.Subnets
// gives for its zone. (moto ignores an AvailabilityZone override: without a
// subnet, instances land in the region's first default subnet.)
func TestLaunchIntoSubnet(t *testing.T) {
	t.Parallel()
	raw := motoClient(t)
	ctx := testContext(t)
	out, err := raw.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []types.Filter{
		{Name: awssdk.String("availability-zone"), Values: []string{"us-east-1c"}},
		{Name: awssdk.String("default-for-az"), Values: []string{"true"}},
	}})
	if err != nil || len(out.Subnets) == 0 {
		t.Fatalf("find the default subnet of us-east-1c: %v, %v", out, err)
	}
	subnet := awssdk.ToString(out.Subnets[0].SubnetId)
	b := setup(t, func(c *Config) { c.Subnets = map[string]string{"us-east-1c": subnet} }, nil)
	lc := spot("m5.large/us-east-1c/spot", "m5.large")
	lc.Zone = "us-east-1c"
	got, err := b.prov.Launch(b.ctx, lc, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("launch 2: %v, %v", got, err)
	}
	checkLaunched(t, b, got, lc, "m5.large", types.InstanceLifecycleTypeSpot)
	for id, inst := range describe(t, b, idsOf(got)) {
		if s, z := awssdk.ToString(inst.SubnetId), awssdk.ToString(inst.Placement.AvailabilityZone); s != subnet || z != "us-east-1c" {
			t.Errorf("instance %s: in subnet %s, zone %s; want %s in us-east-1c", id, s, z, subnet)
		}
	}
}

func TestTerminate(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	lc := onDemand("m5.large/us-east-1a/on-demand", "m5.large")
	got, err := b.prov.Launch(b.ctx, lc, 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("launch 3: %v, %v", got, err)
	}
	ids := idsOf(got)
	// One instance that never existed: EC2 rejects a call naming it, and
	// the provider must still terminate the others.
	gone := "i-0123456789abcdef0"
	if err := b.prov.Terminate(b.ctx, append([]string{gone}, ids[:2]...)); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	seen := describe(t, b, ids)
	for i, id := range ids {
		s := seen[id].State.Name
		terminated := s == types.InstanceStateNameTerminated || s == types.InstanceStateNameShuttingDown
		if terminated != (i < 2) {
			t.Errorf("instance %s: state %s after terminating %v", id, s, ids[:2])
		}
	}
	list, err := b.prov.Instances(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := idsOf(list); !slices.Equal(l, ids[2:]) {
		t.Errorf("Instances after terminate: %v, want %v", l, ids[2:])
	}
	if err := b.prov.Terminate(b.ctx, nil); err != nil {
		t.Errorf("terminate nothing: %v", err)
	}
	if err := b.prov.Terminate(b.ctx, []string{ids[2], ""}); err == nil {
		t.Error("terminate with an empty ID: no error")
	}
}

func TestInstancesByConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	a := onDemand("a/on-demand", "m5.large")
	s := spot("s/spot", "c5.xlarge")
	ga, err := b.prov.Launch(b.ctx, a, 2)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := b.prov.Launch(b.ctx, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	list, err := b.prov.Instances(b.ctx)
	if err != nil {
		t.Fatalf("instances: %v", err)
	}
	byConfig := map[string][]string{}
	for _, inst := range list {
		byConfig[inst.Config] = append(byConfig[inst.Config], inst.ID)
		if inst.LaunchedAt.IsZero() {
			t.Errorf("instance %s: no launch time", inst.ID)
		}
	}
	for cfg := range byConfig {
		sort.Strings(byConfig[cfg])
	}
	want := map[string][]string{a.Name: idsOf(ga), s.Name: idsOf(gs)}
	if len(byConfig) != len(want) || !slices.Equal(byConfig[a.Name], want[a.Name]) || !slices.Equal(byConfig[s.Name], want[s.Name]) {
		t.Errorf("instances by config: %v, want %v", byConfig, want)
	}

	// A provider with other tags (another cluster) sees none of them.
	other := b.cfg
	other.Tags = map[string]string{"haul:test": b.template + "-other"}
	p, err := New(b.ctx, other, staticCredentials)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := p.Instances(b.ctx); err != nil || len(list) != 0 {
		t.Errorf("instances of another cluster: %v, %v; want none", list, err)
	}
}

func TestPrices(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	configs := []autoscale.LaunchConfig{
		spot("c5.xlarge/us-east-1b/spot", "c5.xlarge"),
		{Name: "m5.large/any/spot", InstanceType: "m5.large", Purchase: autoscale.Spot},
		onDemand("m5.large/us-east-1a/on-demand", "m5.large"),
		onDemand("r5.large/us-east-1a/on-demand", "r5.large"), // not in the table
	}
	prices, err := b.prov.Prices(b.ctx, configs)
	if err != nil {
		t.Fatalf("prices: %v", err)
	}
	// moto's spot prices are synthetic: check there is one, not its value.
	for _, name := range []string{configs[0].Name, configs[1].Name} {
		p, ok := prices[name]
		if !ok || p < 0 {
			t.Errorf("spot price of %s: %v (present %v), want a non-negative price", name, p, ok)
		}
	}
	if p := prices[configs[2].Name]; p != 0.096 {
		t.Errorf("on-demand price of %s: %v, want 0.096 from the table", configs[2].Name, p)
	}
	if p, ok := prices[configs[3].Name]; ok {
		t.Errorf("on-demand price of %s (not in the table): %v, want it left out", configs[3].Name, p)
	}
	if len(prices) != 3 {
		t.Errorf("prices: %v, want 3 entries", prices)
	}
}

// TestLaunchRejectedByEC2 asks moto for an instance type it does not know:
// the call fails with a non-capacity error, so Launch fails.
func TestLaunchRejectedByEC2(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	got, err := b.prov.Launch(b.ctx, onDemand("bogus", "zz9.huge"), 2)
	if err == nil || !strings.Contains(err.Error(), "InvalidInstanceType") {
		t.Fatalf("launch of an unknown instance type: %v, %v; want an InvalidInstanceType error", got, err)
	}
	cfg := b.cfg
	cfg.DefaultLaunchTemplate = b.template + "-missing"
	p, err := New(b.ctx, cfg, staticCredentials)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Launch(b.ctx, onDemand("no-template", "m5.large"), 1); err == nil {
		t.Errorf("launch from a missing template: %v, no error", got)
	}
}

// TestSpotCycleOnRejectedType cycles past a type moto rejects to the next
// type of the group, on the real emulator.
func TestSpotCycleOnRejectedType(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.SpotCycleTypes = [][]string{{"zz9.huge", "c5.2xlarge", "m5.2xlarge"}}
	}, nil)
	lc := spot("zz9.huge/us-east-1b/spot", "zz9.huge")
	got, err := b.prov.Launch(b.ctx, lc, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("launch 2: %v, %v; want 2 instances of the next type", got, err)
	}
	checkLaunched(t, b, got, lc, "c5.2xlarge", types.InstanceLifecycleTypeSpot)
}

// partialFleet is a PARTIAL FAKE: moto never runs out of capacity, so it
// stands in front of the real moto client and plays EC2 being short. It
// passes every call through to moto, except that CreateFleet
//   - for an instance type in starved, launches nothing and answers with an
//     InsufficientInstanceCapacity error entry, as EC2 does;
//   - otherwise launches in moto, then keeps at most keep instances per
//     call (keep < 0: all), terminates the rest in moto so that nothing
//     leaks, and reports each dropped one as an InsufficientInstanceCapacity
//     error entry.
//
// What is faked is only the size of the answer; templates, tags, instance
// state and termination are moto's.
type partialFleet struct {
	EC2API
	keep    int
	starved map[string]bool
	errCode string // the error code to report; default InsufficientInstanceCapacity

	mu    sync.Mutex
	calls []string // instance type of each CreateFleet call
}

func (f *partialFleet) CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, optFns ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	it := string(in.LaunchTemplateConfigs[0].Overrides[0].InstanceType)
	f.mu.Lock()
	f.calls = append(f.calls, it)
	f.mu.Unlock()
	shortErr := types.CreateFleetError{
		ErrorCode:    awssdk.String("InsufficientInstanceCapacity"),
		ErrorMessage: awssdk.String("We currently do not have sufficient " + it + " capacity (partial fake)."),
		Lifecycle:    types.InstanceLifecycleOnDemand,
	}
	if f.errCode != "" {
		shortErr.ErrorCode = awssdk.String(f.errCode)
		shortErr.ErrorMessage = awssdk.String("rejected (partial fake)")
	}
	if f.starved[it] {
		return &ec2.CreateFleetOutput{FleetId: awssdk.String("fleet-starved"), Errors: []types.CreateFleetError{shortErr}}, nil
	}
	out, err := f.EC2API.CreateFleet(ctx, in, optFns...)
	if err != nil || f.keep < 0 {
		return out, err
	}
	var kept []types.CreateFleetInstance
	var dropped []string
	n := 0
	for _, inst := range out.Instances {
		var ids []string
		for _, id := range inst.InstanceIds {
			if n < f.keep {
				ids = append(ids, id)
				n++
			} else {
				dropped = append(dropped, id)
				out.Errors = append(out.Errors, shortErr)
			}
		}
		if len(ids) > 0 {
			inst.InstanceIds = ids
			kept = append(kept, inst)
		}
	}
	out.Instances = kept
	if len(dropped) > 0 {
		if _, err := f.EC2API.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: dropped}); err != nil {
			return nil, fmt.Errorf("partial fake: terminate dropped instances: %w", err)
		}
	}
	return out, nil
}

// TestLaunchCapacityShort: EC2 delivers 2 of 5. The provider returns the 2
// without an error, which is how the caller learns to mark the config
// capacity-limited (autoscale.Policy.Launched with got < asked).
func TestLaunchCapacityShort(t *testing.T) {
	t.Parallel()
	fake := &partialFleet{keep: 2}
	b := setup(t, nil, func(c EC2API) EC2API { fake.EC2API = c; return fake })
	lc := onDemand("m5.large/us-east-1a/on-demand", "m5.large")
	got, err := b.prov.Launch(b.ctx, lc, 5)
	if err != nil {
		t.Fatalf("launch 5 with capacity for 2: error %v, want none", err)
	}
	if len(got) != 2 {
		t.Fatalf("launch 5 with capacity for 2: got %d instances, want 2", len(got))
	}
	checkLaunched(t, b, got, lc, "m5.large", "")
	list, err := b.prov.Instances(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := idsOf(list); !slices.Equal(l, idsOf(got)) {
		t.Errorf("Instances: %v, want only the 2 delivered %v", l, idsOf(got))
	}
	if !slices.Equal(fake.calls, []string{"m5.large"}) {
		t.Errorf("CreateFleet calls by type: %v, want one for m5.large", fake.calls)
	}

	// Nothing at all, for capacity: still not an error, zero instances.
	fake.keep = 0
	got, err = b.prov.Launch(b.ctx, lc, 3)
	if err != nil || len(got) != 0 {
		t.Errorf("launch 3 with no capacity: %v, %v; want no instances and no error", got, err)
	}
}

// TestLaunchFleetErrorNotCapacity: a fleet that launches nothing and
// reports a non-capacity error entry is a failed launch.
func TestLaunchFleetErrorNotCapacity(t *testing.T) {
	t.Parallel()
	fake := &partialFleet{keep: 0, errCode: "InvalidParameterValue"}
	b := setup(t, nil, func(c EC2API) EC2API { fake.EC2API = c; return fake })
	got, err := b.prov.Launch(b.ctx, onDemand("m5.large/us-east-1a/on-demand", "m5.large"), 2)
	if err == nil || !strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Errorf("launch with a non-capacity fleet error: %v, %v; want an error naming InvalidParameterValue", got, err)
	}
	// Some instances and a non-capacity error: the instances are returned.
	fake.keep = 1
	got, err = b.prov.Launch(b.ctx, onDemand("m5.large/us-east-1a/on-demand", "m5.large"), 2)
	if err != nil || len(got) != 1 {
		t.Errorf("launch with 1 instance and an error entry: %v, %v; want the instance and no error", got, err)
	}
}

// TestSpotCycle: the first type has no spot capacity, the second gives 1 of
// the 3 asked, the third the rest.
func TestSpotCycle(t *testing.T) {
	t.Parallel()
	fake := &partialFleet{keep: 1, starved: map[string]bool{"r5.xlarge": true}}
	b := setup(t, func(c *Config) {
		c.SpotCycleTypes = [][]string{{"t3.small"}, {"r5.xlarge", "m5.xlarge", "c5.xlarge"}}
	}, func(c EC2API) EC2API { fake.EC2API = c; return fake })
	lc := spot("r5.xlarge/us-east-1b/spot", "r5.xlarge")
	got, err := b.prov.Launch(b.ctx, lc, 3)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	if !slices.Equal(fake.calls, []string{"r5.xlarge", "m5.xlarge", "c5.xlarge"}) {
		t.Errorf("CreateFleet calls by type: %v, want r5.xlarge, m5.xlarge, c5.xlarge", fake.calls)
	}
	if len(got) != 2 {
		t.Fatalf("got %d instances, want 2 (1 m5.xlarge, 1 c5.xlarge)", len(got))
	}
	seen := describe(t, b, idsOf(got))
	var kinds []string
	for _, inst := range seen {
		kinds = append(kinds, string(inst.InstanceType))
	}
	sort.Strings(kinds)
	if !slices.Equal(kinds, []string{"c5.xlarge", "m5.xlarge"}) {
		t.Errorf("instance types: %v, want c5.xlarge and m5.xlarge", kinds)
	}

	// Every type starved: no instances, no error (capacity-limited).
	fake.starved = map[string]bool{"r5.xlarge": true, "m5.xlarge": true, "c5.xlarge": true}
	if got, err := b.prov.Launch(b.ctx, lc, 3); err != nil || len(got) != 0 {
		t.Errorf("launch with every type starved: %v, %v; want nothing and no error", got, err)
	}
	// On-demand configs do not cycle.
	fake.calls = nil
	if got, err := b.prov.Launch(b.ctx, onDemand("od", "r5.xlarge"), 1); err != nil || len(got) != 0 || len(fake.calls) != 1 {
		t.Errorf("on-demand launch of a starved type: %v, %v, calls %v; want nothing, no error, one call", got, err, fake.calls)
	}
}

// recordingEC2 is a PURE FAKE that records TerminateInstances batches and
// answers as EC2 does when one ID is unknown; every other method panics
// through the nil embedded interface, which no test here reaches.
type recordingEC2 struct {
	EC2API
	unknown map[string]bool
	batches [][]string
}

func (r *recordingEC2) TerminateInstances(_ context.Context, in *ec2.TerminateInstancesInput, _ ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error) {
	r.batches = append(r.batches, slices.Clone(in.InstanceIds))
	for _, id := range in.InstanceIds {
		if r.unknown[id] {
			return nil, &smithy.GenericAPIError{Code: "InvalidInstanceID.NotFound", Message: "The instance ID '" + id + "' does not exist"}
		}
	}
	return &ec2.TerminateInstancesOutput{}, nil
}

func TestTerminateBatches(t *testing.T) {
	t.Parallel()
	rec := &recordingEC2{}
	p, err := NewWithClient(rec, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 2500)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%017x", i)
	}
	if err := p.Terminate(t.Context(), append(ids, ids[0])); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, batch := range rec.batches {
		sizes = append(sizes, len(batch))
	}
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Errorf("batch sizes: %v, want 1000, 1000, 500 (duplicates dropped)", sizes)
	}

	// An unknown ID fails its batch; the batch is retried one ID at a
	// time and the unknown one skipped.
	rec.batches = nil
	rec.unknown = map[string]bool{"i-gone": true}
	if err := p.Terminate(t.Context(), []string{"i-a", "i-gone", "i-b"}); err != nil {
		t.Fatalf("terminate with an unknown ID: %v", err)
	}
	if want := [][]string{{"i-a", "i-gone", "i-b"}, {"i-a"}, {"i-gone"}, {"i-b"}}; !slices.EqualFunc(rec.batches, want, slices.Equal) {
		t.Errorf("calls: %v, want %v", rec.batches, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	rec := &recordingEC2{}
	for name, cfg := range map[string]Config{
		"config tag":         {Tags: map[string]string{ConfigTag: "x"}},
		"aws prefix":         {Tags: map[string]string{"aws:foo": "x"}},
		"empty tag key":      {Tags: map[string]string{"": "x"}},
		"negative price":     {OnDemandPrices: map[string]float64{"m5.large": -1}},
		"type in two groups": {SpotCycleTypes: [][]string{{"m5.large", "c5.large"}, {"m5.large"}}},
		"empty group":        {SpotCycleTypes: [][]string{{}}},
		"empty template":     {LaunchTemplates: map[string]string{"a": " "}},
	} {
		if _, err := NewWithClient(rec, cfg); err == nil {
			t.Errorf("%s: no error for %+v", name, cfg)
		}
	}
	if _, err := NewWithClient(nil, Config{}); err == nil {
		t.Error("nil client: no error")
	}
}

func TestLaunchRejectsBadInput(t *testing.T) {
	t.Parallel()
	p, err := NewWithClient(&recordingEC2{}, Config{DefaultLaunchTemplate: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		lc    autoscale.LaunchConfig
		count int
	}{
		"no name":        {autoscale.LaunchConfig{InstanceType: "m5.large", Purchase: autoscale.OnDemand}, 1},
		"no type":        {autoscale.LaunchConfig{Name: "a", Purchase: autoscale.OnDemand}, 1},
		"bad purchase":   {autoscale.LaunchConfig{Name: "a", InstanceType: "m5.large", Purchase: "reserved"}, 1},
		"negative count": {onDemand("a", "m5.large"), -1},
	} {
		if got, err := p.Launch(t.Context(), tc.lc, tc.count); err == nil {
			t.Errorf("%s: %v, no error", name, got)
		}
	}
}

func TestCapacityErrorClassification(t *testing.T) {
	t.Parallel()
	if !isCapacityError(fmt.Errorf("wrapped: %w", &smithy.GenericAPIError{Code: "InsufficientInstanceCapacity"})) {
		t.Error("InsufficientInstanceCapacity is not a capacity error")
	}
	if isCapacityError(&smithy.GenericAPIError{Code: "UnauthorizedOperation"}) || isCapacityError(errors.New("boom")) {
		t.Error("a non-capacity error is classified as capacity")
	}
}
