// Command haul is the single binary of haul: server, client and task host.
// Everything lives in internal/cli.
package main

import (
	"os"

	"github.com/haul-dev/haul/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
