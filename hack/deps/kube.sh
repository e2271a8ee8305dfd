#!/usr/bin/env bash
# Builds the test Kubernetes tools from the Go modules under test/tools/:
#   kube-apiserver, kube-controller-manager, kubectl (test/tools/kube, k8s.io/kubernetes v1.36.3),
#   etcd (test/tools/etcd, go.etcd.io/etcd/server/v3 v3.6.8, what Kubernetes 1.36 uses),
#   source-controller (test/tools/flux-source, v1.9.1), helm-controller (test/tools/flux-helm, v1.6.4),
# and copies the Flux CRDs and the controllers' config/manager and config/rbac kustomize dirs.
#
# Output: $DODAI_TOOLS_DIR/kube-<key>/{bin,flux/...}, where <key> hashes the tools modules'
# go.mod/go.sum, `go version` and $layout below; $DODAI_TOOLS_DIR/kube is a symlink to it.
# A complete kube-<key> is reused (cache); builds run one after another (each big link peaks at
# ~2.3 GB RAM and uses both cores). Used by test/kubetest. See docs/test-cluster.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
. hack/deps/lib/toolcache.bash
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

# Bump when the set of outputs or the build flags change.
layout=1
KUBE_VERSION=v1.36.3
KUBE_LDFLAGS="-X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1
 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION}
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=36"
KUBE_LDFLAGS=$(echo $KUBE_LDFLAGS)

key=$( { echo "layout=$layout"; go version; for m in kube etcd flux-source flux-helm; do
  cat "test/tools/$m/go.mod" "test/tools/$m/go.sum"; done; } | sha256sum | cut -c1-16)
toolcache_begin kube "$key"
mkdir -p "$tmp/flux"

total_start=$(now)
build() { # build <module dir> <output name> <package> [ldflags]
  local mod=$1 out=$2 pkg=$3 ldflags=${4:-} start
  start=$(now)
  (cd "test/tools/$mod" && go build -ldflags "$ldflags" -o "$tmp/bin/$out" "$pkg")
  printf 'kube tools: built %-24s in %6s s\n' "$out" "$(since "$start")"
}

echo "kube tools: building into $dest (cold builds take ~10 min on 2 cores)"
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$KUBE_LDFLAGS"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$KUBE_LDFLAGS"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$KUBE_LDFLAGS"
build etcd etcd go.etcd.io/etcd/server/v3
build flux-source source-controller github.com/fluxcd/source-controller
build flux-helm helm-controller github.com/fluxcd/helm-controller

copy_config() { # copy_config <module dir> <module path> <name>
  local dir
  dir=$(cd "test/tools/$1" && go list -m -f '{{.Dir}}' "$2")
  [ -d "$dir/config/crd/bases" ] || { echo "kube tools: $2 has no config/crd/bases in $dir" >&2; exit 1; }
  mkdir -p "$tmp/flux/crds" "$tmp/flux/$3"
  cp "$dir"/config/crd/bases/*.yaml "$tmp/flux/crds/"
  for sub in manager rbac; do
    if [ -d "$dir/config/$sub" ]; then
      cp -r "$dir/config/$sub" "$tmp/flux/$3/$sub"
    fi
  done
}
copy_config flux-source github.com/fluxcd/source-controller source-controller
copy_config flux-helm github.com/fluxcd/helm-controller helm-controller
chmod -R u+w "$tmp/flux"

{ echo "key=$key"; go version; echo "kubernetes=$KUBE_VERSION"; echo "built=$(date -u +%FT%TZ)"; } > "$tmp/.complete"
toolcache_finish
printf 'kube tools: done in %s s -> %s\n' "$(since "$total_start")" "$dest"
