package runner

// Crash stops the runner as a kill -9 would, as far as the store and its
// workers can tell: it stops renewing and dispatching and releases
// nothing (no lease, no worker).
func (r *Runner) Crash() {
	r.stopped.Store(true)
	r.cancel()
	r.wg.Wait()
}
