package spec

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// maxMantissa bounds the digits of a quantity's number, so parsing cost and
// memory stay small whatever the input.
const maxMantissa = 40

// maxExponent bounds a quantity's decimal exponent (after its suffix).
const maxExponent = 60

var binarySuffix = map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}

var decimalSuffix = map[string]int{"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

// parseQuantity parses a Kubernetes-style quantity: an unsigned decimal
// number, then a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m
// k M G T P E) or a decimal exponent (e6, E-3). It returns the exact value.
func parseQuantity(s string) (*big.Rat, error) {
	num := s
	i := 0
	if i < len(num) && num[i] == '+' {
		i++
	}
	digits := 0
	for i < len(num) && num[i] >= '0' && num[i] <= '9' {
		i, digits = i+1, digits+1
	}
	if i < len(num) && num[i] == '.' {
		i++
		for i < len(num) && num[i] >= '0' && num[i] <= '9' {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		if strings.HasPrefix(s, "-") {
			return nil, errors.New("must not be negative")
		}
		return nil, errors.New("must start with a number")
	}
	if digits > maxMantissa {
		return nil, fmt.Errorf("more than %d digits", maxMantissa)
	}
	num, suffix := strings.TrimPrefix(s[:i], "+"), s[i:]
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, errors.New("must start with a number")
	}
	exp := 0
	var shift uint
	if e, ok := decimalSuffix[suffix]; ok {
		exp = e
	} else if b, ok := binarySuffix[suffix]; ok {
		shift = b
	} else if len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') {
		e, err := strconv.Atoi(suffix[1:])
		if err != nil {
			return nil, fmt.Errorf("bad exponent %q", suffix)
		}
		if e > maxExponent || e < -maxExponent {
			return nil, fmt.Errorf("exponent %q out of range", suffix)
		}
		exp = e
	} else {
		return nil, fmt.Errorf("unknown suffix %q (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)", suffix)
	}
	if shift > 0 {
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift)))
	}
	if exp != 0 {
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		if exp > 0 {
			r.Mul(r, new(big.Rat).SetInt(p))
		} else {
			r.Quo(r, new(big.Rat).SetInt(p))
		}
	}
	return r, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// ParseBytes parses a memory size: a plain number of bytes ("1073741824",
// "1e9") or a Kubernetes-style quantity ("512Mi", "1Gi", "1G", "1.5Gi",
// "100k"). A fraction of a byte rounds up. The size must not be negative and
// must fit an int64.
func ParseBytes(s string) (int64, error) {
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	// Round up to a whole byte.
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, errors.New("too large")
	}
	return q.Int64(), nil
}

// FormatBytes writes n in the shortest exact form ParseBytes reads back:
// with a binary suffix (1Gi), a decimal one (1G) or none; binary wins a tie.
func FormatBytes(n int64) string {
	best := strconv.FormatInt(n, 10)
	if n <= 0 {
		return best
	}
	try := func(s string) {
		if len(s) < len(best) {
			best = s
		}
	}
	for _, s := range []struct {
		suffix string
		shift  uint
	}{{"Ei", 60}, {"Pi", 50}, {"Ti", 40}, {"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n%(1<<s.shift) == 0 {
			try(strconv.FormatInt(n>>s.shift, 10) + s.suffix)
			break
		}
	}
	binary := best
	for _, s := range []struct {
		suffix string
		unit   int64
	}{{"E", 1e18}, {"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if n%s.unit == 0 {
			if d := strconv.FormatInt(n/s.unit, 10) + s.suffix; len(d) < len(binary) {
				best = d
			}
			break
		}
	}
	return best
}

// maxCPU bounds a tier's CPU count.
const maxCPU = 1 << 20

// ParseCPU parses a CPU count: a number of cores ("2", "0.5") or a
// Kubernetes-style quantity ("500m" is half a core). It must be positive.
func ParseCPU(s string) (float64, error) {
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	if r.Sign() <= 0 {
		return 0, errors.New("must be more than zero")
	}
	if r.Cmp(new(big.Rat).SetInt64(maxCPU)) > 0 {
		return 0, fmt.Errorf("more than %d cores", maxCPU)
	}
	f, _ := r.Float64()
	return f, nil
}

// parseDuration parses a timeout: a Go duration ("30s", "1h30m", "250ms")
// or a whole number of seconds ("90"). It returns milliseconds, rounding a
// fraction of one up; 0 means no timeout.
func parseDuration(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, errors.New("must not be negative")
		}
		if n > math.MaxInt64/1000 {
			return 0, errors.New("too long")
		}
		return n * 1000, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("use a duration like 90s, 15m or 1h30m, or a whole number of seconds")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms, nil
}

// parseInt parses a whole number as YAML writes one: decimal (leading zeros
// are decimal too), or with a 0x, 0o or 0b prefix, with optional
// underscores; an integral float like 1e6 is accepted as well.
func parseInt(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("out of range")
	}
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return n, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("out of range")
	}
	if floatLike(s) {
		if r, ok := new(big.Rat).SetString(s); ok {
			if !r.IsInt() {
				return 0, errors.New("must be a whole number")
			}
			if !r.Num().IsInt64() {
				return 0, errors.New("out of range")
			}
			return r.Num().Int64(), nil
		}
	}
	return 0, errors.New("must be a whole number")
}

// floatLike reports whether s is a decimal float with a bounded mantissa and
// exponent ([-+]digits[.digits][e[-+]digits]), safe to give to big.Rat.
func floatLike(s string) bool {
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	mant = strings.TrimLeft(mant, "+-")
	whole, frac, _ := strings.Cut(mant, ".")
	if whole+frac == "" || len(mant) > maxMantissa || !allDigits(whole) || !allDigits(frac) {
		return false
	}
	if !hasExp {
		return true
	}
	e, err := strconv.Atoi(exp)
	return err == nil && e >= -maxExponent && e <= maxExponent
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
