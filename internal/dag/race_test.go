//go:build race

package dag

// bigN is the size of the large-graph tests: smaller under the race
// detector, which slows map-heavy code about tenfold.
const bigN = 100_000
