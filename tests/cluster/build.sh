#!/usr/bin/env bash
# Builds the control plane the e2e tests start (etcd, kube-apiserver,
# kube-controller-manager, and kubectl for scripts/demo-operator) from the official Go modules at the versions pinned in
# kubernetes/go.mod and etcd/go.mod, once per version, into a cache outside the work tree.
# Prints the directory holding the binaries.
#
#   tests/cluster/build.sh           build if missing, print the bin directory
#   tests/cluster/build.sh --cached  print it if built, else exit 1 (no build)
#   FRESHTEAM_CONTROLPLANE_CACHE=dir  cache root (default: ~/.cache/freshteam-operator/controlplane)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
cache_root="${FRESHTEAM_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/freshteam-operator/controlplane}"
bin="$cache_root/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"

if [ -x "$bin/etcd" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kubectl" ]; then
  echo "$bin"
  exit 0
fi
[ "${1:-}" = --cached ] && exit 1

command -v go >/dev/null || { echo "build.sh: Go is needed to build the control plane" >&2; exit 1; }
# The pinned modules, built as they are: no toolchain download, no cgo, go.sum as checked in.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "$bin"
tmp="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

major="${K8S_VERSION#v}"; major="${major%%.*}"
minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$(date +%s)
for cmd in kube-apiserver kube-controller-manager kubectl; do
  if [ ! -x "$bin/$cmd" ]; then
    echo "build.sh: building $cmd $K8S_VERSION (the first build takes several minutes)" >&2
    (cd "$here/kubernetes" && go build -ldflags "$ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    mv "$tmp/$cmd" "$bin/$cmd"
  fi
done
if [ ! -x "$bin/etcd" ]; then
  echo "build.sh: building etcd $ETCD_VERSION" >&2
  (cd "$here/etcd" && go build -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
    -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  mv "$tmp/etcd" "$bin/etcd"
fi
echo "build.sh: control plane ready in $bin ($(( $(date +%s) - start ))s)" >&2
echo "$bin"
