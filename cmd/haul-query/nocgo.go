//go:build !cgo

// Command haul-query needs cgo (DuckDB is a C++ library): this build
// without cgo only says so. See main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "haul-query: built without cgo; DuckDB needs it: CGO_ENABLED=1 go build -o bin/haul-query ./cmd/haul-query")
	os.Exit(1)
}
