#!/usr/bin/env bash
# Builds the Talos config validators of older releases from test/tools/talos-validate:
#   talos-validate-v1.12 (go.mod, machinery v1.12.7) and talos-validate-v1.11 (go.v1.11.mod, v1.11.6).
# Each decodes configs strictly and validates them as a node of that release would; the
# machine-config golden tests and test/faketalos's nodes of those releases use them
# (dodai itself is built with the newest machinery, which validates its own release).
#
# Output: $DODAI_TOOLS_DIR/talos-<key>/bin, <key> hashing the module files, `go version` and
# $layout; $DODAI_TOOLS_DIR/talos is a symlink to it. A complete build is reused (cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
. hack/deps/lib/toolcache.bash
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

layout=1
mod=test/tools/talos-validate
key=$( { echo "layout=$layout"; go version; cat "$mod"/main.go "$mod"/go.*; } | sha256sum | cut -c1-16)
toolcache_begin talos "$key"

start=$(now)
build() { # build <minor> <modfile>
  local t0
  t0=$(now)
  (cd "$mod" && go build -modfile="$2" -o "$tmp/bin/talos-validate-$1" .)
  printf 'talos validators: built talos-validate-%s in %s s\n' "$1" "$(since "$t0")"
}
build v1.12 go.mod
build v1.11 go.v1.11.mod

{ echo "key=$key"; go version; for b in "$tmp"/bin/*; do echo "$(basename "$b")=$("$b" -version)"; done; } > "$tmp/.complete"
toolcache_finish
printf 'talos validators: done in %s s -> %s\n' "$(since "$start")" "$dest"
