#!/usr/bin/env bash
# TFTP benchmark (issue 5): dodai's TFTP server vs atftpd and dnsmasq, 1 MiB,
# blksize 1468, windowsize 1/8/32, at ~1 ms RTT, same files, same run.
#
#   sudo hack/bench/tftp.sh [REPS]        (default 5 repetitions; root: creates netns)
#
# Topology (three namespaces, all created and deleted here):
#   cli(c0 10.77.0.9) --veth-- (r0) rly (r1) --veth-- srv(s0 10.77.0.1/.2/.3)
# The kernel has no sch_netem, so "rly" runs `tftpbench delay`, which copies
# frames between r0 and r1 after DELAY_US (default 400 µs) each way.
# Servers: dodai (tftpbench serve) on .1, atftpd 0.8 on .2, dnsmasq (TFTP only,
# --port=0) on .3, all port 69. Client: atftp (the only Debian client that
# negotiates windowsize). The delay line's own ceiling: the same windowed
# exchange between two endpoints that do nothing else (tftpbench ideal-serve
# on .4, ideal-fetch in cli; no TFTP server and no atftp start-up in the
# path), interleaved with the real runs. A second table: the same servers
# fetched by `tftpbench fetch` (a windowed client with no start-up or file
# I/O per transfer), so the servers, not atftp, are the slow part.
# dodai hands each window to the kernel in one send with UDP segmentation
# (internal/tftp/gso.go), and the ideal exchange does the same. The veths
# offer UDP segmentation offload like a NIC with USO, so such a send reaches
# the delay line as one frame, which cuts it into its datagrams (a frame
# each on the client's side, as on a wire). USO=off turns the offload off on
# the server's veth (ethtool), so the server's kernel segments in software
# and the delay line sees the same frames from every server: a NIC without
# USO. Needs: atftp atftpd dnsmasq-base iproute2, Go (and ethtool for USO=off).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEADLINE="${DEADLINE:-600}"   # seconds for the whole run
# Bound the whole run: timeout sends SIGTERM, the trap below cleans up.
if [ -z "${TFTP_BENCH_INNER:-}" ]; then
  exec timeout -k 15 "$DEADLINE" env TFTP_BENCH_INNER=1 bash "$0" "$@"
fi
REPS="${1:-5}"
DELAY_US="${DELAY_US:-400}"
USO="${USO:-on}"
for t in atftp atftpd dnsmasq ip go sha256sum; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install atftp atftpd dnsmasq-base iproute2" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }

ID=$$
CLI=tftpb-cli-$ID RLY=tftpb-rly-$ID SRV=tftpb-srv-$ID
WORK=$(mktemp -d /tmp/tftpbench.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in "$CLI" "$RLY" "$SRV"; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$ns"
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> building tftpbench"
go build -o "$WORK/tftpbench" ./hack/bench/tftpbench

mkdir -p "$WORK/root" "$WORK/out"
head -c $((1<<20)) /dev/urandom > "$WORK/root/f1m.bin"
WANT=$(sha256sum < "$WORK/root/f1m.bin" | cut -d' ' -f1)

echo "==> namespaces $CLI $RLY $SRV"
for ns in "$CLI" "$RLY" "$SRV"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add c0 netns "$CLI" type veth peer name r0 netns "$RLY"
ip link add s0 netns "$SRV" type veth peer name r1 netns "$RLY"
ip -n "$CLI" addr add 10.77.0.9/24 dev c0
for a in 1 2 3 4 5; do ip -n "$SRV" addr add 10.77.0.$a/24 dev s0; done
for l in "$CLI c0" "$SRV s0" "$RLY r0" "$RLY r1"; do set -- $l; ip -n "$1" link set "$2" up; done
if [ "$USO" = off ]; then
  command -v ethtool >/dev/null || { echo "USO=off needs ethtool: apt-get install ethtool" >&2; exit 1; }
  ip netns exec "$SRV" ethtool -K s0 tx-udp-segmentation off
fi

ip netns exec "$RLY" "$WORK/tftpbench" delay -a r0 -b r1 -delay "${DELAY_US}us" 2>"$WORK/delay.log" &
PIDS+=($!); PID_DELAY=$!
ip netns exec "$SRV" "$WORK/tftpbench" serve -root "$WORK/root" -addr 10.77.0.1:69 2>"$WORK/dodai.log" &
PIDS+=($!); PID_DODAI=$!
# dodai with one send per block (no UDP segmentation), for the CPU table
ip netns exec "$SRV" "$WORK/tftpbench" serve -no-gso -root "$WORK/root" -addr 10.77.0.5:69 2>"$WORK/dodai-nogso.log" &
PIDS+=($!); PID_NOGSO=$!
ip netns exec "$SRV" "$WORK/tftpbench" ideal-serve -addr 10.77.0.4:6969 2>"$WORK/ideal.log" &
PIDS+=($!)
ip netns exec "$SRV" atftpd --daemon --no-fork --user root --group root --port 69 --bind-address 10.77.0.2 \
  --logfile "$WORK/atftpd.log" "$WORK/root" &
PIDS+=($!); PID_ATFTPD=$!
ip netns exec "$SRV" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --enable-tftp \
  --tftp-root="$WORK/root" --listen-address=10.77.0.3 --bind-interfaces --user=root --group=root \
  --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log" &
PIDS+=($!)
sleep 1
for p in "${PIDS[@]}"; do kill -0 "$p" || { echo "a server died at start-up; logs in $WORK" >&2; cat "$WORK"/*.log >&2; exit 1; }; done

# fetch SERVER_IP WINDOW -> prints seconds
fetch() {
  local ip=$1 win=$2 out="$WORK/out/$1-$2" s e
  rm -f "$out"
  s=$(date +%s%N)
  ip netns exec "$CLI" timeout 60 atftp --option "blksize 1468" --option "windowsize $win" -g -r f1m.bin -l "$out" "$ip" 69 >/dev/null 2>&1 \
    || { echo "atftp from $ip windowsize $win failed" >&2; return 1; }
  e=$(date +%s%N)
  [ "$(sha256sum < "$out" | cut -d' ' -f1)" = "$WANT" ] || { echo "checksum mismatch from $ip" >&2; return 1; }
  echo "$(( (e - s) / 1000 ))"   # microseconds
}

# ideal WINDOW -> prints microseconds of the ideal exchange
ideal() {
  ip netns exec "$CLI" timeout 60 "$WORK/tftpbench" ideal-fetch -addr 10.77.0.4:6969 -size $((1<<20)) -blksize 1468 -windowsize "$1" \
    || { echo "ideal-fetch windowsize $1 failed" >&2; return 1; }
}

# gofetch SERVER_IP WINDOW -> prints microseconds of tftpbench's own client
# (no process start-up inside the timing, no file I/O): the servers' rows
# without atftp in the way.
gofetch() {
  ip netns exec "$CLI" timeout 60 "$WORK/tftpbench" fetch -addr "$1:69" -file f1m.bin -blksize 1468 -windowsize "$2" -sha256 "$WANT" \
    || { echo "tftpbench fetch from $1 windowsize $2 failed" >&2; return 1; }
}

# Warm-up (ARP, page cache), then measure RTT with windowsize-1 lock step.
for ip in 10.77.0.1 10.77.0.2 10.77.0.3; do fetch $ip 1 >/dev/null; done
ideal 1 >/dev/null

declare -A T
names=([1]=dodai [2]=atftpd [3]=dnsmasq [4]=ideal [5]=dodai-go [6]=atftpd-go [7]=dnsmasq-go)
echo "==> $REPS repetitions, servers interleaved"
for r in $(seq "$REPS"); do
  for w in 1 8 32; do
    # alternate the server order from one repetition to the next
    order="1 2 3 4 5 6 7"; (( r % 2 == 0 )) && order="7 6 5 4 3 2 1"
    for a in $order; do
      case $a in
        4) T[$a,$w]+="$(ideal $w) " ;;
        5|6|7) T[$a,$w]+="$(gofetch 10.77.0.$(( a - 4 )) $w) " ;;
        *) T[$a,$w]+="$(fetch 10.77.0.$a $w) " ;;
      esac
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
best() { tr ' ' '\n' | grep -v '^$' | sort -n | head -1; }
printf '\n1 MiB, blksize 1468, one-way delay %s us, %s runs each: MB/s (10^6 B/s) of the median run / of the best run;\n' "$DELAY_US" "$REPS"
printf 'times include atftp start-up. UDP segmentation offload on the server veth: %s. Load average at the end: %s\n\n' "$USO" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| windowsize | dodai | atftpd 0.8.0 | dnsmasq %s | dodai / atftpd | dodai / dnsmasq | delay line alone (no server, no atftp) |\n|---|---|---|---|---|---|---|\n' \
  "$(dnsmasq --version | head -1 | awk '{print $3}')"
for w in 1 8 32; do
  declare -A M B
  for a in 1 2 3 4; do M[$a]=$(echo "${T[$a,$w]}" | median); B[$a]=$(echo "${T[$a,$w]}" | best); done
  awk -v w=$w -v d=${M[1]} -v at=${M[2]} -v dn=${M[3]} -v id=${M[4]} -v bd=${B[1]} -v bat=${B[2]} -v bdn=${B[3]} -v bid=${B[4]} 'BEGIN {
    mb=1048576
    printf "| %d | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |\n",
      w, mb/d, mb/bd, mb/at, mb/bat, mb/dn, mb/bdn, at/d, bat/bd, dn/d, bdn/bd, mb/id, mb/bid }'
done
printf '\nThe same servers, fetched by tftpbench'"'"'s own client (no atftp start-up, no file I/O):\n\n'
printf '| windowsize | dodai | atftpd | dnsmasq | dodai / atftpd | dodai / dnsmasq | delay line alone |\n|---|---|---|---|---|---|---|\n'
for w in 1 8 32; do
  declare -A M B
  for a in 4 5 6 7; do M[$a]=$(echo "${T[$a,$w]}" | median); B[$a]=$(echo "${T[$a,$w]}" | best); done
  awk -v w=$w -v d=${M[5]} -v at=${M[6]} -v dn=${M[7]} -v id=${M[4]} -v bd=${B[5]} -v bat=${B[6]} -v bdn=${B[7]} -v bid=${B[4]} 'BEGIN {
    mb=1048576
    printf "| %d | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |\n",
      w, mb/d, mb/bd, mb/at, mb/bat, mb/dn, mb/bdn, at/d, bat/bd, dn/d, bdn/bd, mb/id, mb/bid }'
done
echo
echo "raw microseconds per run:"
for w in 1 8 32; do for a in 1 2 3 4 5 6 7; do echo "  ${names[$a]} w=$w: ${T[$a,$w]}"; done; done

# CPU per transfer: the server process's user+system time (/proc/PID/stat,
# all its threads, also exited ones) over CPU_RUNS windowsize-32 fetches by
# tftpbench's client, the servers interleaved, and the delay line's in the
# same transfers.
CPU_RUNS="${CPU_RUNS:-40}"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A C D
for p in dodai:10.77.0.1:$PID_DODAI nogso:10.77.0.5:$PID_NOGSO atftpd:10.77.0.2:$PID_ATFTPD; do C[${p%%:*}]=0; D[${p%%:*}]=0; done
for r in $(seq "$CPU_RUNS"); do
  for p in dodai:10.77.0.1:$PID_DODAI nogso:10.77.0.5:$PID_NOGSO atftpd:10.77.0.2:$PID_ATFTPD; do
    IFS=: read -r n ip pid <<<"$p"
    s0=$(ticks "$pid") d0=$(ticks "$PID_DELAY")
    gofetch "$ip" 32 >/dev/null
    C[$n]=$(( C[$n] + $(ticks "$pid") - s0 )); D[$n]=$(( D[$n] + $(ticks "$PID_DELAY") - d0 ))
  done
done
hz=$(getconf CLK_TCK)
printf '\nCPU per 1 MiB transfer at windowsize 32 (tftpbench fetch, %s transfers each, ms of user+system time):\n\n' "$CPU_RUNS"
printf '| server | server CPU | delay line CPU |\n|---|---|---|\n'
for n in dodai nogso atftpd; do
  label=$n; [ $n = dodai ] && label="dodai (segmented sends)"; [ $n = nogso ] && label="dodai -no-gso (a send per block)"; [ $n = atftpd ] && label="atftpd 0.8.0"
  awk -v l="$label" -v c="${C[$n]}" -v d="${D[$n]}" -v n="$CPU_RUNS" -v hz="$hz" 'BEGIN { printf "| %s | %.1f | %.1f |\n", l, c*1000/hz/n, d*1000/hz/n }'
done
