package logs

import "fmt"

// Prefix is the object-store prefix of one attempt's log: the runner hands
// it to the worker, the gateway reads from it.
func Prefix(job string, task, attempt int32) string {
	return fmt.Sprintf("logs/%s/%d/%d", job, task, attempt)
}
