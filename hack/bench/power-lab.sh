#!/usr/bin/env bash
# Hands-free netboot of a virtual rack: `dodai lab up` with N machines, then
# `dodai power on --pxe-once` in batches of B (the next batch is powered when
# the previous one has netbooted: what bootstrap --power-batch does), until
# every machine runs the probe initramfs it netbooted through `dodai netboot`.
# Prints the time per machine (power-on to "PROBE: init started" on its
# serial console) and the total, for each batch size.
#
#   sudo hack/bench/power-lab.sh [MACHINES=5] [BATCHES="5 2 1"] [FIRMWARE=uefi]
#
# Needs root, hack/deps/{netboot,power}.apt. Everything runs in the lab's own
# network namespace; lab down removes it at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-5}
BATCHES=${2:-"5 2 1"}
FW=${3:-uefi}
WORK=$(mktemp -d /tmp/dodai-power-bench.XXXXXX)
DODAI=$WORK/dodai
go build -o "$DODAI" ./cmd/dodai
DIR=$WORK/lab
NBPID=
cleanup() {
  [ -n "$NBPID" ] && kill "$NBPID" 2>/dev/null && wait "$NBPID" 2>/dev/null || true
  "$DODAI" lab down -C "$DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$DODAI" lab up -C "$DIR" --controlplanes 1 --workers $((N - 1)) --firmware "$FW" --probe --memory 384 --disk 1 --accel tcg >/dev/null
NS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['netns'])" "$DIR/lab/lab.json")
NAMES=$(python3 -c "import json,sys;print(' '.join(m['name'] for m in json.load(open(sys.argv[1]))['machines']))" "$DIR/lab/lab.json")
MACS=$(python3 -c "import json,sys;print(' '.join(m['mac'] for m in json.load(open(sys.argv[1]))['machines']))" "$DIR/lab/lab.json")
ip netns exec "$NS" "$DODAI" netboot -C "$DIR" --log-format json >"$WORK/netboot.log" 2>&1 &
NBPID=$!
for _ in $(seq 100); do grep -q "netboot server running" "$WORK/netboot.log" && break; sleep 0.2; done

now() { date +%s.%N; }
echo "machines=$N firmware=$FW accel=tcg cores=$(nproc) load=$(cut -d' ' -f1 /proc/loadavg)"
for B in $BATCHES; do
  # Fresh start: everything off, dodai netboot told to netboot them again.
  ip netns exec "$NS" "$DODAI" power off -C "$DIR" >/dev/null
  for mac in $MACS; do ip netns exec "$NS" curl -s -X POST "http://127.0.0.1:8080/reinstall?mac=$mac" >/dev/null; done
  declare -A mark=() t0=() t1=()
  for n in $NAMES; do mark[$n]=$(stat -c %s "$DIR/lab/machines/$n/serial.log" 2>/dev/null || echo 0); done
  start=$(now)
  set -- $NAMES
  while [ $# -gt 0 ]; do
    batch=()
    for _ in $(seq "$B"); do [ $# -gt 0 ] && { batch+=("$1"); shift; }; done
    args=(); for n in "${batch[@]}"; do args+=(--node "$n"); t0[$n]=$(now); done
    ip netns exec "$NS" "$DODAI" power on --pxe-once -C "$DIR" "${args[@]}" >/dev/null
    deadline=$(( $(date +%s) + 900 ))
    while :; do
      left=0
      for n in "${batch[@]}"; do
        [ -n "${t1[$n]:-}" ] && continue
        if tail -c +"$(( ${mark[$n]} + 1 ))" "$DIR/lab/machines/$n/serial.log" 2>/dev/null | grep -q "PROBE: init started"; then t1[$n]=$(now); else left=1; fi
      done
      [ $left = 0 ] && break
      [ "$(date +%s)" -gt $deadline ] && { echo "batch $B: timeout" >&2; exit 1; }
      sleep 0.5
    done
  done
  total=$(echo "$(now) - $start" | bc)
  per=""; sum=0
  for n in $NAMES; do d=$(echo "${t1[$n]} - ${t0[$n]}" | bc); per="$per $n=$(printf %.0f "$d")s"; sum=$(echo "$sum + $d" | bc); done
  printf 'power-batch=%s  all %s netbooted in %.0fs  mean per machine %.0fs  (%s )\n' "$B" "$N" "$total" "$(echo "$sum / $N" | bc -l)" "$per"
  unset mark t0 t1
done
