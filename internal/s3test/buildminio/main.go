// Command buildminio builds the MinIO server that package s3test uses, if
// the cache lacks it, and prints its path: a make target can run
//
//	go run ./internal/s3test/buildminio
//
// before the tests, so that the first test binary does not spend its
// timeout on a cold build (about 8 minutes).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/haul-dev/haul/internal/s3test"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := s3test.Binary(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(path)
}
