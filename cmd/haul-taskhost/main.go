// Command haul-taskhost is the small, static worker binary that haul installs
// into workers: it polls its runner for tasks, runs them and ships their logs.
// It is `haul taskhost` without the rest of haul (no store drivers), so that
// it can be copied into any container. Build it with CGO_ENABLED=0.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/haul-dev/haul/internal/taskhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := taskhost.Main(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
