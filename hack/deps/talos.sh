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
export DODAI_TOOLS_DIR="${DODAI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dodai/tools}"
mkdir -p "$DODAI_TOOLS_DIR"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

layout=1
mod=test/tools/talos-validate
key=$( { echo "layout=$layout"; go version; cat "$mod"/main.go "$mod"/go.*; } | sha256sum | cut -c1-16)
dest="$DODAI_TOOLS_DIR/talos-$key"
link="$DODAI_TOOLS_DIR/talos"

point_link() {
  ln -sfn "talos-$key" "$link.tmp.$$"
  mv -T "$link.tmp.$$" "$link"
}

exec 9>"$DODAI_TOOLS_DIR/.talos.lock"
flock 9

if [ -f "$dest/.complete" ]; then
  point_link
  echo "talos validators: cached in $dest"
  exit 0
fi

tmp="$dest.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"

start=$(date +%s.%N)
build() { # build <minor> <modfile>
  local t0
  t0=$(date +%s.%N)
  (cd "$mod" && go build -modfile="$2" -o "$tmp/bin/talos-validate-$1" .)
  printf 'talos validators: built talos-validate-%s in %s s\n' "$1" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
}
build v1.12 go.mod
build v1.11 go.v1.11.mod

{ echo "key=$key"; go version; for b in "$tmp"/bin/*; do echo "$(basename "$b")=$("$b" -version)"; done; } > "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
point_link
printf 'talos validators: done in %s s -> %s\n' "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$dest"
