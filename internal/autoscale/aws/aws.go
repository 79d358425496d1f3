// Package aws is the Amazon EC2 provider of haul's autoscaler: it implements
// autoscale.Provider with the EC2 fleet API (CreateFleet of type "instant"
// from launch templates), terminates instances in batches, reads spot prices
// from the spot price history and on-demand prices from a price table file,
// and lists the instances it launched (by their haul:config tag) so that the
// autoscaler can rebuild its view of supply after a restart.
//
// It imports the autoscale contract, the AWS SDK for Go v2 and the standard
// library. Everything it calls on EC2 goes through the small EC2API
// interface, which *ec2.Client satisfies. See docs/autoscaler-aws.md.
package aws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/haul-dev/haul/internal/autoscale"
)

// ConfigTag is the tag every instance launched by the provider carries; its
// value is the LaunchConfig.Name the instance was launched for.
const ConfigTag = "haul:config"

// TerminateBatch is the most instance IDs sent in one TerminateInstances
// call.
const TerminateBatch = 1000

// DefaultLaunchTemplateVersion is the launch template version used when
// Config.LaunchTemplateVersion is empty.
const DefaultLaunchTemplateVersion = "$Default"

// maxTags is EC2's limit on tags per resource.
const maxTags = 50

// EC2API is the part of the EC2 API the provider calls. *ec2.Client
// satisfies it; tests wrap one to inject behaviour an emulator lacks.
type EC2API interface {
	CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, optFns ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error)
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput, optFns ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	DescribeSpotPriceHistory(ctx context.Context, in *ec2.DescribeSpotPriceHistoryInput, optFns ...func(*ec2.Options)) (*ec2.DescribeSpotPriceHistoryOutput, error)
}

// Config configures a Provider.
type Config struct {
	// Region is the AWS region ("us-east-1"). Empty takes the region from
	// the environment or shared config (AWS_REGION, ~/.aws/config).
	Region string
	// Endpoint is a custom EC2 endpoint URL, such as a local emulator
	// ("http://127.0.0.1:5000"). Empty uses the region's endpoint.
	Endpoint string
	// LaunchTemplates maps LaunchConfig.Name to a launch template name or
	// ID (an ID starts with "lt-"). Configs not listed use
	// DefaultLaunchTemplate.
	LaunchTemplates map[string]string
	// DefaultLaunchTemplate is the launch template (name or ID) of configs
	// not in LaunchTemplates; empty means such configs cannot launch.
	DefaultLaunchTemplate string
	// LaunchTemplateVersion is the template version to launch ("$Default",
	// "$Latest" or a number); empty means "$Default".
	LaunchTemplateVersion string
	// Subnets maps an availability zone to the subnet to launch into there.
	// A config whose zone has no subnet here is launched with only the
	// availability zone set, into the zone's default subnet.
	Subnets map[string]string
	// Tags are put on every instance, besides haul:config=<config name>.
	// Instances lists only instances that carry all of them, so that two
	// autoscalers with different tags can share an account.
	Tags map[string]string
	// OnDemandPrices maps an instance type to its on-demand price in
	// dollars per hour (LoadPriceTable reads them from a file).
	OnDemandPrices map[string]float64
	// SpotCycleTypes lists groups of interchangeable instance types. When a
	// spot config's instance type is in a group, a launch that gets fewer
	// instances than asked of that type asks for the rest of the other
	// types of the group, in order. A type may be in at most one group.
	// Only list types at least as large as the config's capacity.
	SpotCycleTypes [][]string
	// Logger receives launch warnings (partial fleets, errors); nil
	// discards them.
	Logger *slog.Logger
	// Now is the clock used for Instance.LaunchedAt and spot price
	// queries; nil means time.Now.
	Now func() time.Time
}

// Provider launches and terminates EC2 instances for the autoscaler. It is
// safe for concurrent use.
type Provider struct {
	client   EC2API
	cfg      Config
	version  string
	log      *slog.Logger
	now      func() time.Time
	cycle    map[string][]string // instance type -> its cycle group
	tagOrder []string            // sorted keys of cfg.Tags
}

var _ autoscale.Provider = (*Provider)(nil)

// New returns a Provider that talks to EC2 with the default AWS credential
// chain, cfg.Region and cfg.Endpoint. opts adjust the EC2 client (tests set
// static credentials with them).
func New(ctx context.Context, cfg Config, opts ...func(*ec2.Options)) (*Provider, error) {
	var loadOpts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("aws provider: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("aws provider: no region: set Config.Region or AWS_REGION")
	}
	all := make([]func(*ec2.Options), 0, len(opts)+1)
	if cfg.Endpoint != "" {
		endpoint := cfg.Endpoint
		all = append(all, func(o *ec2.Options) { o.BaseEndpoint = awssdk.String(endpoint) })
	}
	all = append(all, opts...)
	return NewWithClient(ec2.NewFromConfig(awsCfg, all...), cfg)
}

// NewWithClient returns a Provider that uses client; cfg.Region and
// cfg.Endpoint are ignored (the client already has them).
func NewWithClient(client EC2API, cfg Config) (*Provider, error) {
	if client == nil {
		return nil, errors.New("aws provider: nil EC2 client")
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("aws provider: %w", err)
	}
	p := &Provider{
		client:  client,
		cfg:     cfg,
		version: cfg.LaunchTemplateVersion,
		log:     cfg.Logger,
		now:     cfg.Now,
		cycle:   map[string][]string{},
	}
	if p.version == "" {
		p.version = DefaultLaunchTemplateVersion
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	for _, group := range cfg.SpotCycleTypes {
		for _, t := range group {
			p.cycle[t] = group
		}
	}
	for k := range cfg.Tags {
		p.tagOrder = append(p.tagOrder, k)
	}
	sort.Strings(p.tagOrder)
	return p, nil
}

func (c *Config) validate() error {
	for name, tmpl := range c.LaunchTemplates {
		if name == "" {
			return errors.New("LaunchTemplates: empty config name")
		}
		if strings.TrimSpace(tmpl) == "" {
			return fmt.Errorf("LaunchTemplates[%q]: empty launch template", name)
		}
	}
	if len(c.Tags)+1 > maxTags {
		return fmt.Errorf("Tags: %d tags plus %s exceed EC2's %d tags per instance", len(c.Tags), ConfigTag, maxTags)
	}
	for k := range c.Tags {
		switch {
		case k == "":
			return errors.New("Tags: empty key")
		case k == ConfigTag:
			return fmt.Errorf("Tags: %s is set by the provider", ConfigTag)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("Tags: key %q: the aws: prefix is reserved by AWS", k)
		}
	}
	for t, price := range c.OnDemandPrices {
		if t == "" {
			return errors.New("OnDemandPrices: empty instance type")
		}
		if math.IsNaN(price) || math.IsInf(price, 0) || price < 0 {
			return fmt.Errorf("OnDemandPrices[%q]: price %v is not a non-negative number", t, price)
		}
	}
	for zone, subnet := range c.Subnets {
		if zone == "" || subnet == "" {
			return fmt.Errorf("Subnets: empty zone or subnet (%q: %q)", zone, subnet)
		}
	}
	seen := map[string]int{}
	for i, group := range c.SpotCycleTypes {
		if len(group) == 0 {
			return fmt.Errorf("SpotCycleTypes[%d]: empty group", i)
		}
		for _, t := range group {
			if t == "" {
				return fmt.Errorf("SpotCycleTypes[%d]: empty instance type", i)
			}
			if j, ok := seen[t]; ok {
				return fmt.Errorf("SpotCycleTypes[%d]: instance type %s is already in group %d", i, t, j)
			}
			seen[t] = i
		}
	}
	return nil
}

// Launch asks EC2 for count instances of lc with one instant fleet per
// instance type tried, and returns the instances it got. Fewer than count
// without an error means EC2 had no more capacity (or quota) for lc: the
// caller marks the config capacity-limited. An error means nothing was
// launched and the cause was not capacity (a bad template, permissions,
// the network).
func (p *Provider) Launch(ctx context.Context, lc autoscale.LaunchConfig, count int) ([]autoscale.Instance, error) {
	if count < 0 {
		return nil, fmt.Errorf("aws provider: launch %s: negative count %d", lc.Name, count)
	}
	if err := checkConfig(lc); err != nil {
		return nil, fmt.Errorf("aws provider: launch: %w", err)
	}
	if count == 0 {
		return nil, nil
	}
	tmpl := p.cfg.DefaultLaunchTemplate
	if t, ok := p.cfg.LaunchTemplates[lc.Name]; ok {
		tmpl = t
	}
	if tmpl == "" {
		return nil, fmt.Errorf("aws provider: launch %s: no launch template (set LaunchTemplates[%q] or DefaultLaunchTemplate)", lc.Name, lc.Name)
	}

	instanceTypes := []string{lc.InstanceType}
	if lc.Purchase == autoscale.Spot {
		instanceTypes = p.spotTypes(lc.InstanceType)
	}

	var (
		got      []autoscale.Instance
		failures []fleetFailure // per-instance errors from the responses
		callErrs []error        // whole calls that failed
		fatal    bool           // some failure was not about capacity
	)
	for _, it := range instanceTypes {
		need := count - len(got)
		if need <= 0 {
			break
		}
		out, err := p.client.CreateFleet(ctx, p.fleetInput(lc, tmpl, it, need))
		if err != nil {
			callErrs = append(callErrs, fmt.Errorf("CreateFleet %s: %w", it, err))
			if !isCapacityError(err) {
				fatal = true
			}
			if ctx.Err() != nil {
				break
			}
			continue
		}
		at := p.now()
		for _, inst := range out.Instances {
			for _, id := range inst.InstanceIds {
				got = append(got, autoscale.Instance{ID: id, Config: lc.Name, LaunchedAt: at})
			}
		}
		for _, e := range out.Errors {
			f := fleetFailure{
				code:         awssdk.ToString(e.ErrorCode),
				message:      awssdk.ToString(e.ErrorMessage),
				instanceType: it,
			}
			if !capacityCodes[f.code] {
				fatal = true
			}
			failures = append(failures, f)
		}
	}

	if len(failures) > 0 || len(callErrs) > 0 || len(got) < count {
		attrs := []any{
			"config", lc.Name, "asked", count, "got", len(got),
			"types", instanceTypes,
		}
		if len(failures) > 0 {
			attrs = append(attrs, "fleet_errors", summarize(failures))
		}
		if len(callErrs) > 0 {
			attrs = append(attrs, "call_errors", errors.Join(callErrs...).Error())
		}
		p.log.WarnContext(ctx, "aws provider: fleet launch fell short or had errors", attrs...)
	}
	if len(got) > 0 || !fatal {
		return got, nil
	}
	var parts []string
	if len(failures) > 0 {
		parts = append(parts, "fleet errors: "+summarize(failures))
	}
	err := errors.Join(callErrs...)
	if len(parts) > 0 {
		err = errors.Join(err, errors.New(strings.Join(parts, "; ")))
	}
	return nil, fmt.Errorf("aws provider: launch %d of %s: no instances: %w", count, lc.Name, err)
}

// checkConfig reports what in lc keeps it from being launched.
func checkConfig(lc autoscale.LaunchConfig) error {
	if lc.Name == "" {
		return errors.New("launch config has no name")
	}
	if lc.InstanceType == "" {
		return fmt.Errorf("launch config %s has no instance type", lc.Name)
	}
	switch lc.Purchase {
	case autoscale.OnDemand, autoscale.Spot:
	default:
		return fmt.Errorf("launch config %s: unknown purchase option %q (want %q or %q)", lc.Name, lc.Purchase, autoscale.OnDemand, autoscale.Spot)
	}
	return nil
}

// spotTypes is the order in which a spot launch of instanceType tries
// instance types: instanceType first, then the rest of its cycle group.
func (p *Provider) spotTypes(instanceType string) []string {
	out := []string{instanceType}
	for _, t := range p.cycle[instanceType] {
		if t != instanceType {
			out = append(out, t)
		}
	}
	return out
}

// fleetInput builds the instant fleet request for n instances of type it.
func (p *Provider) fleetInput(lc autoscale.LaunchConfig, tmpl, it string, n int) *ec2.CreateFleetInput {
	spec := &types.FleetLaunchTemplateSpecificationRequest{Version: awssdk.String(p.version)}
	if strings.HasPrefix(tmpl, "lt-") {
		spec.LaunchTemplateId = awssdk.String(tmpl)
	} else {
		spec.LaunchTemplateName = awssdk.String(tmpl)
	}
	override := types.FleetLaunchTemplateOverridesRequest{InstanceType: types.InstanceType(it)}
	if subnet, ok := p.cfg.Subnets[lc.Zone]; ok && lc.Zone != "" {
		override.SubnetId = awssdk.String(subnet)
	} else if lc.Zone != "" {
		override.AvailabilityZone = awssdk.String(lc.Zone)
	}

	tags := make([]types.Tag, 0, len(p.tagOrder)+1)
	for _, k := range p.tagOrder {
		tags = append(tags, types.Tag{Key: awssdk.String(k), Value: awssdk.String(p.cfg.Tags[k])})
	}
	tags = append(tags, types.Tag{Key: awssdk.String(ConfigTag), Value: awssdk.String(lc.Name)})

	in := &ec2.CreateFleetInput{
		Type:        types.FleetTypeInstant,
		ClientToken: awssdk.String(clientToken()),
		LaunchTemplateConfigs: []types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: spec,
			Overrides:                   []types.FleetLaunchTemplateOverridesRequest{override},
		}},
		TargetCapacitySpecification: &types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity:       awssdk.Int32(int32(min(n, math.MaxInt32))),
			DefaultTargetCapacityType: types.DefaultTargetCapacityTypeOnDemand,
		},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tags}},
	}
	if lc.Purchase == autoscale.Spot {
		in.TargetCapacitySpecification.DefaultTargetCapacityType = types.DefaultTargetCapacityTypeSpot
		in.SpotOptions = &types.SpotOptionsRequest{
			AllocationStrategy:           types.SpotAllocationStrategyPriceCapacityOptimized,
			InstanceInterruptionBehavior: types.SpotInstanceInterruptionBehaviorTerminate,
		}
	} else {
		in.OnDemandOptions = &types.OnDemandOptionsRequest{AllocationStrategy: types.FleetOnDemandAllocationStrategyLowestPrice}
	}
	return in
}

// clientToken makes a CreateFleet call idempotent across the SDK's retries.
func clientToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// capacityCodes are the EC2 error codes that mean "no more of this config
// now" rather than "this request is wrong": a launch that gets only these
// returns fewer instances without an error, and the caller backs off the
// config. Quota errors count: backing off is the right answer to them too.
var capacityCodes = map[string]bool{
	"InsufficientInstanceCapacity":         true,
	"InsufficientCapacity":                 true,
	"InsufficientHostCapacity":             true,
	"InsufficientReservedInstanceCapacity": true,
	"InsufficientCapacityOnHost":           true,
	"UnfulfillableCapacity":                true,
	"MaxSpotInstanceCountExceeded":         true,
	"MaxSpotFleetRequestCountExceeded":     true,
	"SpotMaxPriceTooLow":                   true,
	"InstanceLimitExceeded":                true,
	"VcpuLimitExceeded":                    true,
	"InsufficientFreeAddressesInSubnet":    true,
}

// isCapacityError reports whether err is an EC2 API error with a capacity
// code.
func isCapacityError(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && capacityCodes[apiErr.ErrorCode()]
}

// fleetFailure is one entry of CreateFleetOutput.Errors.
type fleetFailure struct {
	code, message, instanceType string
}

// summarize groups failures by code and instance type: "InsufficientInstanceCapacity
// ×2 (m5.large: We currently do not have ...)".
func summarize(fs []fleetFailure) string {
	type key struct{ code, instanceType string }
	counts := map[key]int{}
	first := map[key]string{}
	var order []key
	for _, f := range fs {
		k := key{f.code, f.instanceType}
		if counts[k] == 0 {
			order = append(order, k)
			first[k] = f.message
		}
		counts[k]++
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		code := k.code
		if code == "" {
			code = "unknown error"
		}
		s := code
		if counts[k] > 1 {
			s += fmt.Sprintf(" ×%d", counts[k])
		}
		s += " (" + k.instanceType
		if first[k] != "" {
			s += ": " + first[k]
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, "; ")
}

// Terminate terminates the instances, at most TerminateBatch per call. IDs
// of instances that no longer exist are not an error. Every batch is
// tried; the errors of those that failed are joined.
func (p *Provider) Terminate(ctx context.Context, ids []string) error {
	for i, id := range ids {
		if strings.TrimSpace(id) == "" {
			return fmt.Errorf("aws provider: terminate: empty instance ID at index %d", i)
		}
	}
	ids = uniq(ids)
	var errs []error
	for start := 0; start < len(ids); start += TerminateBatch {
		batch := ids[start:min(start+TerminateBatch, len(ids))]
		if err := p.terminateBatch(ctx, batch); err != nil {
			errs = append(errs, fmt.Errorf("aws provider: terminate instances %d-%d of %d: %w", start+1, start+len(batch), len(ids), err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// terminateBatch terminates ids in one call. EC2 rejects the whole call
// when one ID is unknown (an instance terminated long ago has vanished);
// then each ID is retried alone and unknown ones are skipped.
func (p *Provider) terminateBatch(ctx context.Context, ids []string) error {
	_, err := p.client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids})
	if err == nil || !isNotFound(err) {
		return err
	}
	var errs []error
	for _, id := range ids {
		_, err := p.client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidInstanceID.NotFound"
}

// uniq returns ids without duplicates, in first-seen order.
func uniq(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// spotProduct is the product description spot prices are read for.
const spotProduct = "Linux/UNIX"

// Prices returns the current price per hour of configs by name: for spot
// configs the latest spot price of their instance type in their zone (the
// lowest over the region's zones when the config has no zone), for
// on-demand configs the price table's price of their instance type.
// Configs with no known price are left out (the caller keeps their
// configured price).
func (p *Provider) Prices(ctx context.Context, configs []autoscale.LaunchConfig) (map[string]float64, error) {
	out := make(map[string]float64, len(configs))
	var spot []autoscale.LaunchConfig
	for _, lc := range configs {
		switch lc.Purchase {
		case autoscale.Spot:
			if lc.InstanceType == "" {
				return nil, fmt.Errorf("aws provider: prices: launch config %s has no instance type", lc.Name)
			}
			spot = append(spot, lc)
		default:
			if price, ok := p.cfg.OnDemandPrices[lc.InstanceType]; ok {
				out[lc.Name] = price
			}
		}
	}
	if len(spot) == 0 {
		return out, nil
	}
	latest, err := p.spotPrices(ctx, spot)
	if err != nil {
		return nil, err
	}
	for _, lc := range spot {
		byZone := latest[lc.InstanceType]
		if lc.Zone != "" {
			if sp, ok := byZone[lc.Zone]; ok {
				out[lc.Name] = sp.price
			}
			continue
		}
		best := math.Inf(1)
		for _, sp := range byZone {
			best = math.Min(best, sp.price)
		}
		if !math.IsInf(best, 1) {
			out[lc.Name] = best
		}
	}
	return out, nil
}

type spotPoint struct {
	price float64
	at    time.Time
}

// spotPrices returns the latest spot price by instance type and zone.
// Asking with StartTime = EndTime = now makes EC2 return the price in
// effect now for each type and zone instead of the whole history.
func (p *Provider) spotPrices(ctx context.Context, spot []autoscale.LaunchConfig) (map[string]map[string]spotPoint, error) {
	var instanceTypes []types.InstanceType
	var zones []string
	allZoned := true
	for _, lc := range spot {
		if !slices.Contains(instanceTypes, types.InstanceType(lc.InstanceType)) {
			instanceTypes = append(instanceTypes, types.InstanceType(lc.InstanceType))
		}
		if lc.Zone == "" {
			allZoned = false
		} else if !slices.Contains(zones, lc.Zone) {
			zones = append(zones, lc.Zone)
		}
	}
	now := p.now()
	in := &ec2.DescribeSpotPriceHistoryInput{
		InstanceTypes:       instanceTypes,
		ProductDescriptions: []string{spotProduct},
		StartTime:           awssdk.Time(now),
		EndTime:             awssdk.Time(now),
	}
	if allZoned {
		in.Filters = []types.Filter{{Name: awssdk.String("availability-zone"), Values: zones}}
	}
	latest := map[string]map[string]spotPoint{}
	pages := ec2.NewDescribeSpotPriceHistoryPaginator(p.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("aws provider: prices: DescribeSpotPriceHistory: %w", err)
		}
		for _, sp := range page.SpotPriceHistory {
			zone := awssdk.ToString(sp.AvailabilityZone)
			price, err := parsePrice(awssdk.ToString(sp.SpotPrice))
			if err != nil {
				p.log.WarnContext(ctx, "aws provider: bad spot price", "instance_type", sp.InstanceType, "zone", zone, "err", err)
				continue
			}
			at := awssdk.ToTime(sp.Timestamp)
			t := string(sp.InstanceType)
			if latest[t] == nil {
				latest[t] = map[string]spotPoint{}
			}
			if prev, ok := latest[t][zone]; !ok || at.After(prev.at) {
				latest[t][zone] = spotPoint{price: price, at: at}
			}
		}
	}
	return latest, nil
}

// Instances lists the pending and running instances that carry the
// haul:config tag and all of Config.Tags, with the config each was
// launched for and its launch time.
func (p *Provider) Instances(ctx context.Context) ([]autoscale.Instance, error) {
	filters := []types.Filter{
		{Name: awssdk.String("tag-key"), Values: []string{ConfigTag}},
		{Name: awssdk.String("instance-state-name"), Values: []string{"pending", "running"}},
	}
	for _, k := range p.tagOrder {
		filters = append(filters, types.Filter{Name: awssdk.String("tag:" + k), Values: []string{p.cfg.Tags[k]}})
	}
	var out []autoscale.Instance
	pages := ec2.NewDescribeInstancesPaginator(p.client, &ec2.DescribeInstancesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("aws provider: list instances: DescribeInstances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				cfgName := ""
				for _, tag := range inst.Tags {
					if awssdk.ToString(tag.Key) == ConfigTag {
						cfgName = awssdk.ToString(tag.Value)
					}
				}
				out = append(out, autoscale.Instance{
					ID:         awssdk.ToString(inst.InstanceId),
					Config:     cfgName,
					LaunchedAt: awssdk.ToTime(inst.LaunchTime),
				})
			}
		}
	}
	return out, nil
}
