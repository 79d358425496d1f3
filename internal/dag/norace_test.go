//go:build !race

package dag

// bigN is the size of the large-graph tests (see race_test.go).
const bigN = 1_000_000
