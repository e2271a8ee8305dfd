#!/usr/bin/env bash
# Release binaries as users get them: static (CGO_ENABLED=0), stripped of
# the symbol table and DWARF (-s -w), without local paths (-trimpath), for
# linux/amd64 and linux/arm64, with SHA-256 sums. The same flags as the
# Dockerfile. Why an unstripped `go build ./cmd/dodai` is ~170 MB and these
# are far smaller: docs/netboot.md, "Binary size".
#   usage: hack/release.sh [OUTDIR]        (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist}"
mkdir -p "$OUT"
for arch in amd64 arm64; do
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags="-s -w" -o "$OUT/dodai-linux-$arch" ./cmd/dodai
  echo "$OUT/dodai-linux-$arch: $(stat -c %s "$OUT/dodai-linux-$arch") bytes"
done
(cd "$OUT" && sha256sum dodai-linux-* > SHA256SUMS)
