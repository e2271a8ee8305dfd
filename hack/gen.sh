#!/usr/bin/env bash
# Regenerates what controller-gen derives from api/: deep-copy functions
# (api/v1alpha1/zz_generated.deepcopy.go) and the CRD manifests
# (charts/dodai/crds). controller-gen is pinned in hack/tools/go.mod.
#   usage: hack/gen.sh          # rewrite the checked-in files
#          hack/gen.sh OUTDIR   # write OUTDIR/deepcopy and OUTDIR/crds instead
# TestGeneratedCurrent (api/v1alpha1) runs the second form and fails when
# the checked-in files differ.
set -euo pipefail
cd "$(dirname "$0")/.."
gen() { go tool -modfile=hack/tools/go.mod controller-gen "$@"; }
if [ $# -gt 0 ]; then
  gen object paths=./api/... output:object:dir="$1/deepcopy"
  gen crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config="$1/crds"
else
  gen object paths=./api/...
  gen crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=charts/dodai/crds
fi
