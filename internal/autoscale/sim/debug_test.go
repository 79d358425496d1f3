package sim

import (
	"os"
	"testing"
	"time"
)

func TestDebugCompare(t *testing.T) {
	if os.Getenv("SIMDEBUG") == "" {
		return
	}
	d := 24 * time.Hour
	if v := os.Getenv("SIMDUR"); v != "" {
		d, _ = time.ParseDuration(v)
	}
	start := time.Now()
	r, err := Compare(os.Getenv("SIMDEBUG"), 1, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wall %v\n%s", time.Since(start), r.Table())
	for _, m := range r.Results {
		t.Logf("%+v", m)
	}
}
