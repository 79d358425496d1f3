package spec

import (
	"testing"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "1073741824", want: 1 << 30},
		{in: "512Mi", want: 512 << 20},
		{in: "1Gi", want: 1 << 30},
		{in: "1G", want: 1e9},
		{in: "1e9", want: 1e9},
		{in: "1E9", want: 1e9},
		{in: "1.5Gi", want: 3 << 29},
		{in: ".5Ki", want: 512},
		{in: "+5", want: 5},
		{in: "100k", want: 100_000},
		{in: "2M", want: 2_000_000},
		{in: "3T", want: 3e12},
		{in: "1P", want: 1e15},
		{in: "1E", want: 1e18},
		{in: "7Ei", want: 7 << 60},
		{in: "9E", want: 9e18},
		{in: "1m", want: 1},   // a thousandth of a byte rounds up
		{in: "1e-3", want: 1}, // likewise
		{in: "1500m", want: 2},
		{in: "0", want: 0},
		{in: "", err: "must start with a number"},
		{in: " 1Gi", err: "must start with a number"},
		{in: "Gi", err: "must start with a number"},
		{in: "-1Gi", err: "must not be negative"},
		{in: "1GB", err: `unknown suffix "GB" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`},
		{in: "1 Gi", err: `unknown suffix " Gi" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`},
		{in: "1K", err: `unknown suffix "K" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`},
		{in: "1.2.3", err: `unknown suffix ".3" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`},
		{in: "1e", err: `unknown suffix "e" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`},
		{in: "1ex", err: `bad exponent "ex"`},
		{in: "1e999999999999", err: `exponent "e999999999999" out of range`},
		{in: "1e99999999999999999999", err: `bad exponent "e99999999999999999999"`},
		{in: "1e61", err: `exponent "e61" out of range`},
		{in: "8Ei", err: "too large"},
		{in: "10E", err: "too large"},
		{in: "12345678901234567890123456789012345678901", err: "more than 40 digits"},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("ParseBytes(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0", 1: "1", 1024: "1Ki", 1536: "3Ki" /* 1536 = 1.5Ki */, 1 << 30: "1Gi", 1e9: "1G", 3e12: "3T", 1001: "1001", 7 << 60: "7Ei"} {
		if in == 1536 {
			want = "1536"
		}
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
		if back, err := ParseBytes(FormatBytes(in)); err != nil || back != in {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", in, back, err)
		}
	}
}

func TestParseCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
		err  string
	}{
		{in: "1", want: 1},
		{in: "0.5", want: 0.5},
		{in: "500m", want: 0.5},
		{in: "2500m", want: 2.5},
		{in: "64", want: 64},
		{in: "0", err: "must be more than zero"},
		{in: "0m", err: "must be more than zero"},
		{in: "-1", err: "must not be negative"},
		{in: "2cores", err: `unknown suffix "cores" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`},
		{in: "2E", err: "more than 1048576 cores"},
	}
	for _, tt := range tests {
		got, err := ParseCPU(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("ParseCPU(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseCPU(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "30s", want: 30_000},
		{in: "1h30m", want: 5_400_000},
		{in: "250ms", want: 250},
		{in: "1us", want: 1}, // rounds up to a millisecond, never to "no timeout"
		{in: "90", want: 90_000},
		{in: "0", want: 0},
		{in: "0s", want: 0},
		{in: "-1", err: "must not be negative"},
		{in: "-1s", err: "must not be negative"},
		{in: "1.5", err: "use a duration like 90s, 15m or 1h30m, or a whole number of seconds"},
		{in: "1d", err: "use a duration like 90s, 15m or 1h30m, or a whole number of seconds"},
		{in: "9223372036854775807", err: "too long"},
		{in: "99999999999h", err: "use a duration like 90s, 15m or 1h30m, or a whole number of seconds"},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("parseDuration(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseDuration(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "10", want: 10},
		{in: "-3", want: -3},
		{in: "010", want: 10}, // decimal, not octal
		{in: "0x1F", want: 31},
		{in: "0o17", want: 15},
		{in: "1_000", want: 1000},
		{in: "1e6", want: 1_000_000},
		{in: "2.0", want: 2},
		{in: "1.5", err: "must be a whole number"},
		{in: "1e999999999", err: "must be a whole number"},
		{in: "9223372036854775808", err: "out of range"},
		{in: "1e30", err: "out of range"},
		{in: "ten", err: "must be a whole number"},
	}
	for _, tt := range tests {
		got, err := parseInt(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("parseInt(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseInt(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
