#!/usr/bin/env bash
# Builds golangci-lint at the version pinned in hack/tools/go.mod (a Go tool
# there, beside controller-gen) into $DODAI_TOOLS_DIR/golangci-lint-<key>,
# where <key> hashes hack/tools/go.mod, go.sum and `go version`;
# $DODAI_TOOLS_DIR/golangci-lint links to it. A complete build is reused
# (cache). Used by hack/lint.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DODAI_TOOLS_DIR="${DODAI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dodai/tools}"
mkdir -p "$DODAI_TOOLS_DIR"

key=$( { go version; cat hack/tools/go.mod hack/tools/go.sum; } | sha256sum | cut -c1-16)
dest="$DODAI_TOOLS_DIR/golangci-lint-$key"
link="$DODAI_TOOLS_DIR/golangci-lint"

exec 9>"$DODAI_TOOLS_DIR/.golangci-lint.lock"
flock 9
if [ ! -x "$dest/golangci-lint" ]; then
  start=$(date +%s)
  tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"
  (cd hack/tools && GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly" \
    go build -o "$tmp/golangci-lint" github.com/golangci/golangci-lint/v2/cmd/golangci-lint)
  mv -T "$tmp" "$dest"
  echo "golangci-lint: built in $(( $(date +%s) - start )) s"
else
  echo "golangci-lint: cached in $dest"
fi
ln -sfn "golangci-lint-$key" "$link.tmp.$$"
mv -T "$link.tmp.$$" "$link"
