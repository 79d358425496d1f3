// Command etcd is etcd v3.6 built from the Go module proxy for haul's
// Kubernetes test harness (internal/kubetest). scripts/build-kube.sh builds
// it; nothing else imports this module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
