//go:build race

package storetest

// bigJobTasks is the task count of the large-job test. Under the race
// detector the pure-Go SQLite driver runs some 30 times slower, so the
// test uses a tenth of the usual 100,000 tasks there; without -race it
// runs in full.
const bigJobTasks = 10_000
