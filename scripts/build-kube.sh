#!/usr/bin/env bash
# Builds the etcd, kube-apiserver and kubectl binaries that internal/kubetest
# runs, from the wrapper modules under tools/kube/ (each with its resolved
# go.sum, so nothing new is resolved), into
# $HOME/.cache/haul/kube/<kubernetes version>/. Builds only the ones missing,
# and does nothing when all three are already there. Non-interactive: safe
# with CI=true and no stdin. A cold build takes about 10 minutes on 2 cores
# (kube-apiserver is ~590 CPU-seconds), kubectl a few more minutes; see
# docs/testing-kubernetes.md.
#
#   scripts/build-kube.sh            build if missing
#   scripts/build-kube.sh --print-dir  print the binary directory and exit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
apiserver_mod="$root/tools/kube/apiserver"
etcd_mod="$root/tools/kube/etcd"
kubectl_mod="$root/tools/kube/kubectl"

# The versions come from the wrapper modules, so the cache key cannot drift
# from what is built.
kube_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3} $1 == "k8s.io/kubernetes" {print $2}' "$apiserver_mod/go.mod" | head -n1)"
etcd_version="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3} $1 == "go.etcd.io/etcd/server/v3" {print $2}' "$etcd_mod/go.mod" | head -n1)"
if [[ ! "$kube_version" =~ ^v1\.([0-9]+)\.[0-9]+$ ]]; then
  echo "build-kube: cannot read the k8s.io/kubernetes version from $apiserver_mod/go.mod (got '$kube_version')" >&2
  exit 1
fi
kube_minor="${BASH_REMATCH[1]}"
if [ -z "$etcd_version" ]; then
  echo "build-kube: cannot read the etcd version from $etcd_mod/go.mod" >&2
  exit 1
fi
# kubectl's module is k8s.io/kubectl v0.X.Y for Kubernetes v1.X.Y: it must
# match, since it is cached under the Kubernetes version.
kubectl_version="$(awk '$1 == "require" && $2 == "k8s.io/kubectl" {print $3} $1 == "k8s.io/kubectl" {print $2}' "$kubectl_mod/go.mod" | head -n1)"
if [ "$kubectl_version" != "v0.${kube_version#v1.}" ]; then
  echo "build-kube: $kubectl_mod/go.mod requires k8s.io/kubectl '$kubectl_version', want v0.${kube_version#v1.} (Kubernetes $kube_version)" >&2
  exit 1
fi

dest="$HOME/.cache/haul/kube/$kube_version"
if [ "${1:-}" = "--print-dir" ]; then
  echo "$dest"
  exit 0
fi
if [ $# -gt 0 ]; then
  echo "usage: $0 [--print-dir]" >&2
  exit 2
fi

have_all() { [ -x "$dest/etcd" ] && [ -x "$dest/kube-apiserver" ] && [ -x "$dest/kubectl" ]; }
if have_all; then
  exit 0
fi

mkdir -p "$dest"
# Serialize concurrent builds (several test binaries may call this at once).
exec 9>"$dest/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if have_all; then
  exit 0
fi

export GOWORK=off CGO_ENABLED=0
log() { echo "build-kube: $*" >&2; }

# go_build MODULE_DIR OUTPUT LDFLAGS PACKAGE
# Builds with the module's go.sum as committed; falls back to -mod=mod (and
# says so) only if that go.sum is incomplete, e.g. after a version bump.
go_build() {
  local dir="$1" out="$2" ldflags="$3" pkg="$4" flags="${GOFLAGS:-}"
  local err
  if ! err="$(cd "$dir" && go list -deps "$pkg" 2>&1 >/dev/null </dev/null)"; then
    if grep -qE 'missing go\.sum entry|updates to go\.mod needed' <<<"$err"; then
      log "$dir/go.mod or go.sum is incomplete: building with GOFLAGS=-mod=mod (commit the updated files)"
      flags="$flags -mod=mod"
    else
      echo "$err" >&2
      log "cannot load $pkg in $dir (see above)"
      return 1
    fi
  fi
  local tmp="$out.tmp.$$"
  (cd "$dir" && GOFLAGS="$flags" go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg" </dev/null)
  mv -f "$tmp" "$out"
}

start=$SECONDS
if [ ! -x "$dest/etcd" ]; then
  log "building etcd $etcd_version into $dest (about 1 minute on 2 cores)"
  t=$SECONDS
  go_build "$etcd_mod" "$dest/etcd" "-s -w" .
  log "etcd built in $((SECONDS - t))s"
fi
if [ ! -x "$dest/kube-apiserver" ]; then
  log "building kube-apiserver $kube_version into $dest (about 10 minutes on 2 cores, 2 GB of memory)"
  t=$SECONDS
  go_build "$apiserver_mod" "$dest/kube-apiserver" \
    "-s -w -X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/client-go/pkg/version.gitVersion=$kube_version" \
    k8s.io/kubernetes/cmd/kube-apiserver
  log "kube-apiserver built in $((SECONDS - t))s"
fi
if [ ! -x "$dest/kubectl" ]; then
  log "building kubectl $kubectl_version into $dest (a few minutes on 2 cores)"
  t=$SECONDS
  go_build "$kubectl_mod" "$dest/kubectl" \
    "-s -w -X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/client-go/pkg/version.gitVersion=$kube_version" \
    .
  log "kubectl built in $((SECONDS - t))s"
fi
log "done in $((SECONDS - start))s: $dest"
