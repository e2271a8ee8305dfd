#!/usr/bin/env bash
# Instructions per dhcp-mode handshake on the server side (decode DISCOVER,
# decide, encode OFFER, decode REQUEST, bind + journal, encode ACK), counted
# by valgrind's callgrind, so the number does not depend on the machine's
# load: it runs BenchmarkHandshake of internal/netboot/dhcp for N handshakes
# and counts the instructions inside serveHandshakes only (not the client
# packets built beforehand), with the garbage collector off (GOGC=off): GC
# work lands on other threads at random, so it would make the count noisy.
# Allocations per handshake (what GC costs scale with) come from the
# benchmark itself: go test -bench Handshake -benchmem ./internal/netboot/dhcp
#   usage: hack/bench/dhcp-instructions.sh [SUB=memory|journal-write] [N]
# Needs valgrind. Go's async preemption signals and RDTSCP confuse valgrind
# 3.19, hence the GODEBUG settings.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUB=${1:-memory} N=${2:-2000}
command -v valgrind >/dev/null || { echo "install valgrind" >&2; exit 1; }
WORK=$(mktemp -d /tmp/dhcp-ir.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go test -c -o "$WORK/dhcp.test" ./internal/netboot/dhcp
GOGC=off GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
  --toggle-collect='*dhcp.serveHandshakes' \
  "$WORK/dhcp.test" -test.run '^$' -test.bench "^BenchmarkHandshake/$SUB\$" -test.benchtime "${N}x" -test.cpu 1 >/dev/null 2>&1
ir=$(awk '/^summary:/ {print $2}' "$WORK/cg.out")
echo "BenchmarkHandshake/$SUB: $(( ir / N )) instructions per handshake ($ir for $N)"
[ -z "${CG_OUT:-}" ] || cp "$WORK/cg.out" "$CG_OUT"
