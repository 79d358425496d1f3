#!/usr/bin/env bash
# Installs what the build and the tests need and is idempotent: Debian packages
# (when running as root and they are missing) and Go tools at pinned versions
# into $HOME/.cache/haul/bin.
set -euo pipefail
tools="$HOME/.cache/haul/bin"
mkdir -p "$tools"

need_pkgs=()
# protoc and the well-known types it imports (google/protobuf/*.proto): the
# latter are in libprotobuf-dev, which protobuf-compiler only recommends, and
# this script installs without recommends.
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || need_pkgs+=(libprotobuf-dev)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_pkgs+=(postgresql)
# Headless Chromium for the web UI's browser tests (internal/e2e/ui_test.go),
# and Node with npm to check that the embedded UI is the build of ui/
# (make ui-check); the README's commands need neither.
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v npm >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${need_pkgs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "missing Debian packages (run as root to install): ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

install_go_tool() { # name module version
  local stamp="$tools/.$1-$3"
  if [ ! -x "$tools/$1" ] || [ ! -f "$stamp" ]; then
    echo "installing $2@$3" >&2
    GOBIN="$tools" go install "$2@$3"
    touch "$stamp"
  fi
}
install_go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go v1.36.12
install_go_tool protoc-gen-connect-go connectrpc.com/connect/cmd/protoc-gen-connect-go v1.21.1

# The EC2 emulator the autoscaler's aws provider is tested against: moto is
# pip-installed on these machines (PyPI is not reachable to install it).
command -v moto_server >/dev/null 2>&1 || { echo "moto_server (moto 5.2.1, the EC2 emulator) is not on PATH: the aws provider tests need it" >&2; exit 1; }

# A real Kubernetes API server (etcd + kube-apiserver) built from the Go
# module proxy and cached under $HOME/.cache/haul/kube: about 10 minutes the
# first time, nothing after.
"$(dirname "$0")/build-kube.sh"

# A real S3-compatible server (MinIO) built from the Go module proxy and
# cached under $HOME/.cache/haul/bin: about 8 minutes the first time,
# nothing after (internal/s3test builds it on demand too, but a cold build
# inside a test binary would eat most of go test's timeout).
(cd "$(dirname "$0")/.." && go run ./internal/s3test/buildminio)
