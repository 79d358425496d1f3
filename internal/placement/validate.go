package placement

import (
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"unicode"
)

// validLabel reports whether s is a DNS label: 1 to 63 lowercase letters,
// digits and '-', starting and ending with a letter or digit.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func labelError(what, s string) error {
	return fmt.Errorf("%w: %s %q is not a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')", ErrBadInput, what, s)
}

// validateResources checks that r has no negative amount and that its GPU
// types are DNS labels; what names r in errors.
func validateResources(what string, r Resources) error {
	if r.MilliCPU < 0 {
		return fmt.Errorf("%w: %s: cpu is negative (%s)", ErrBadInput, what, FormatAmount(ResCPU, r.MilliCPU))
	}
	if r.Memory < 0 {
		return fmt.Errorf("%w: %s: memory is negative (%d bytes)", ErrBadInput, what, r.Memory)
	}
	for _, t := range slices.Sorted(maps.Keys(r.GPU)) {
		if !validLabel(t) {
			return labelError(what+": GPU type", t)
		}
		if r.GPU[t] < 0 {
			return fmt.Errorf("%w: %s: gpu/%s is negative (%d)", ErrBadInput, what, t, r.GPU[t])
		}
	}
	return nil
}

// Validate checks a quota: the team and every split's cluster are DNS
// labels, no amount is negative, GPU types are DNS labels and no split
// holds more of a resource than the limit.
func (q Quota) Validate() error {
	if !validLabel(q.Team) {
		return labelError("team", q.Team)
	}
	what := "quota of team " + q.Team
	if err := validateResources(what+", limit", q.Limit); err != nil {
		return err
	}
	for _, c := range slices.Sorted(maps.Keys(q.Clusters)) {
		if !validLabel(c) {
			return labelError(what+": split cluster", c)
		}
		split := q.Clusters[c]
		if err := validateResources(what+", split for cluster "+c, split); err != nil {
			return err
		}
		if name := split.Exceeds(q.Limit); name != "" {
			return fmt.Errorf("%w: %s: the split for cluster %s holds %s %s, more than the limit of %s", ErrBadInput, what, c,
				name, FormatAmount(name, split.Get(name)), FormatAmount(name, q.Limit.Get(name)))
		}
	}
	return nil
}

// Validate checks a cluster: its name and GPU types are DNS labels, its
// state is known, no capacity is negative, prices and the pod budget are
// finite and not negative, and label keys are not empty.
func (c Cluster) Validate() error {
	if !validLabel(c.Name) {
		return labelError("cluster", c.Name)
	}
	what := "cluster " + c.Name
	if _, err := ParseClusterState(string(c.State)); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadInput, what, err)
	}
	if err := validateResources(what+", capacity", c.Capacity); err != nil {
		return err
	}
	bad := func(v float64) bool { return v < 0 || math.IsNaN(v) || math.IsInf(v, 0) }
	for _, p := range []struct {
		name string
		v    float64
	}{{"pods per second", c.PodsPerSecond}, {"price per CPU hour", c.PricePerCPUHour}, {"price per GiB hour", c.PricePerGiBHour}} {
		if bad(p.v) {
			return fmt.Errorf("%w: %s: %s is %v; want a finite number, 0 or more", ErrBadInput, what, p.name, p.v)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(c.PricePerGPUHour)) {
		if !validLabel(t) {
			return labelError(what+": GPU price type", t)
		}
		if v := c.PricePerGPUHour[t]; bad(v) {
			return fmt.Errorf("%w: %s: price per gpu/%s hour is %v; want a finite number, 0 or more", ErrBadInput, what, t, v)
		}
	}
	for k := range c.Labels {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("%w: %s: a node label has an empty key", ErrBadInput, what)
		}
	}
	return nil
}

// maxAmount bounds parsed amounts so that sums of many of them stay far
// from overflowing an int64.
const maxAmount = 1 << 52

// ParseResources reads resources written as "cpu=4,memory=16Gi,gpu/a100=2"
// (commas or spaces between the parts; the format of Resources.String is
// accepted too). cpu is in cores ("4", "0.5") or thousandths ("500m");
// memory is bytes, or a number with one of the suffixes Ki, Mi, Gi, Ti
// (powers of 1024) or K, M, G, T (powers of 1000); a GPU count is a whole
// number and its type a DNS label. Each resource may appear once. An
// empty string or "0" is no resources. Errors name the bad part.
func ParseResources(s string) (Resources, error) {
	var r Resources
	if strings.TrimSpace(s) == "0" {
		return r, nil // how Resources.String prints nothing
	}
	seen := map[string]bool{}
	parts := strings.FieldsFunc(s, func(c rune) bool { return c == ',' || unicode.IsSpace(c) })
	for _, part := range parts {
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Resources{}, fmt.Errorf("%w: resources: %q is not name=amount", ErrBadInput, part)
		}
		if seen[name] {
			return Resources{}, fmt.Errorf("%w: resources: %s is given twice", ErrBadInput, name)
		}
		seen[name] = true
		switch {
		case name == ResCPU:
			n, err := parseScaled(val, map[string]int64{"": 1000, "m": 1})
			if err != nil {
				return Resources{}, fmt.Errorf("%w: resources: cpu %q: %v (want cores such as 4 or 0.5, or thousandths such as 500m)", ErrBadInput, val, err)
			}
			r.MilliCPU = n
		case name == ResMemory:
			n, err := parseScaled(val, map[string]int64{
				"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
				"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
			})
			if err != nil {
				return Resources{}, fmt.Errorf("%w: resources: memory %q: %v (want bytes, or a number with Ki, Mi, Gi, Ti, K, M, G or T)", ErrBadInput, val, err)
			}
			r.Memory = n
		case strings.HasPrefix(name, resGPU):
			t := strings.TrimPrefix(name, resGPU)
			if !validLabel(t) {
				return Resources{}, fmt.Errorf("%w: resources: %q: GPU type %q is not a DNS label", ErrBadInput, part, t)
			}
			n, err := parseScaled(val, map[string]int64{"": 1})
			if err != nil {
				return Resources{}, fmt.Errorf("%w: resources: %s %q: %v (want a whole number of GPUs)", ErrBadInput, name, val, err)
			}
			r.addGPU(t, n)
		default:
			return Resources{}, fmt.Errorf("%w: resources: unknown resource %q (want cpu, memory or gpu/<type>)", ErrBadInput, name)
		}
	}
	return r, nil
}

// parseScaled reads a non-negative decimal number followed by one of the
// suffixes of units and returns it times the suffix's unit, which must be
// a whole number no larger than maxAmount.
func parseScaled(s string, units map[string]int64) (int64, error) {
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("negative")
	}
	i := strings.IndexFunc(s, func(c rune) bool { return !(c >= '0' && c <= '9' || c == '.') })
	num, suffix := s, ""
	if i >= 0 {
		num, suffix = s[:i], s[i:]
	}
	unit, ok := units[suffix]
	if !ok {
		return 0, fmt.Errorf("unknown suffix %q", suffix)
	}
	if num == "" || strings.Count(num, ".") > 1 || num == "." || len(num) > 40 {
		return 0, fmt.Errorf("not a number")
	}
	v, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("not a number")
	}
	v.Mul(v, new(big.Rat).SetInt64(unit))
	if !v.IsInt() {
		return 0, fmt.Errorf("not a whole number of the smallest unit")
	}
	if v.Num().Cmp(big.NewInt(maxAmount)) > 0 {
		return 0, fmt.Errorf("too large")
	}
	return v.Num().Int64(), nil
}
