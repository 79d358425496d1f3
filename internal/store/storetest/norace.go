//go:build !race

package storetest

// bigJobTasks is the task count of the large-job test (see race.go).
const bigJobTasks = 100_000
