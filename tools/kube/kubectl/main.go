// Command kubectl is kubectl v0.34.4 (k8s.io/kubectl's command tree) for
// haul's tests: scripts/build-kube.sh builds it into
// $HOME/.cache/haul/kube/<version>/kubectl, and internal/kubetest runs it
// against its throwaway API servers (for example `kubectl apply
// --dry-run=server` of deploy/kubernetes). It is the same command tree as
// k8s.io/kubernetes/cmd/kubectl without the client authentication plugins
// (the test clusters use a bearer token), which keeps the build small. This
// module exists because the main module must not require kubectl; its go.sum
// is committed so that a build resolves nothing new.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
