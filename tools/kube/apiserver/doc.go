// Package kubeapiserver holds no code: this module exists so that
// scripts/build-kube.sh can build k8s.io/kubernetes/cmd/kube-apiserver, which
// cannot be `go install`ed because k8s.io/kubernetes's go.mod replaces its
// staging modules (k8s.io/api, k8s.io/apiserver, ...) with local paths. The
// replace block in go.mod pins them to the matching published versions, the
// tool directive keeps the requirement through `go mod tidy`, and go.sum is
// committed so that a build resolves nothing new. To move to another
// Kubernetes version, change every version here and in
// internal/kubetest.Version, run `go get -tool
// k8s.io/kubernetes/cmd/kube-apiserver@vX.Y.Z && go mod tidy`, and commit
// go.mod and go.sum.
package kubeapiserver
