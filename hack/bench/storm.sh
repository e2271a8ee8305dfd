#!/usr/bin/env bash
# Boot storm benchmark (docs/benchmarks.md, "Boot storm"): N simulated
# machines (default 1,000) netboot at once. Each sends a PXE-flavoured DHCP
# DISCOVER at the start, and once ACKed fetches the iPXE binary
# (snponly.efi, 173,792 B) by TFTP (blksize 1468, lock-step, retransmitting
# as firmware does), then a 10 MiB kernel and a 60 MiB initramfs by HTTP
# (hack/bench/netboot-load -mode storm). Servers, interleaved REPS times:
#   dodai     dodai netboot --mode dhcp (DHCP, TFTP and HTTP in one process)
#   dnsmasq   dnsmasq (DHCP with its lease file + TFTP, default tftp-max 50
#             concurrent transfers) + nginx (sendfile) for HTTP: the
#             Cozystack setup
# Reported: time until every machine is served, per-machine p50/p99 (from
# its DISCOVER), failures per stage, TFTP retransmissions, and dodai's
# anonymous memory after the storm. Two network namespaces joined by a
# veth, created and deleted here; kills what it started by PID; bounded by
# DEADLINE seconds.
#   usage: hack/bench/storm.sh [REPS]        (root; default 7)
#   env:   STORM_N=1000 machines
# Needs hack/deps/netboot.apt (dnsmasq-base, nginx-light, ipxe, iproute2), jq, Go.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEADLINE="${DEADLINE:-3600}"
if [ -z "${STORM_BENCH_INNER:-}" ]; then
  exec timeout -k 15 "$DEADLINE" env STORM_BENCH_INNER=1 bash "$0" "$@"
fi
REPS="${1:-7}"
SN="${STORM_N:-1000}"
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
for t in dnsmasq nginx ip jq go; do command -v $t >/dev/null || { echo "missing $t (hack/deps/netboot.apt)" >&2; exit 1; }; done
[ -f /usr/lib/ipxe/snponly.efi ] || { echo "missing /usr/lib/ipxe/snponly.efi (package ipxe)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"  # a socket per TFTP transfer and HTTP connection

RUN=$(mktemp -d /tmp/dodai-storm.XXXXXX)
NS_S=dodai-storm-s-$$
NS_C=dodai-storm-c-$$
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for ns in $NS_S $NS_C; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  [ -n "${OUT:-}" ] && cp "$RUN/results.jsonl" "$OUT" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> building dodai, the load generator and the report" >&2
go build -o "$RUN/dodai" ./cmd/dodai
go build -o "$RUN/load" ./hack/bench/netboot-load
go build -o "$RUN/report" ./hack/bench/report

ip netns add $NS_S; ip netns add $NS_C
ip -n $NS_S link set lo up; ip -n $NS_C link set lo up
ip -n $NS_S link add s0 type veth peer name c0 netns $NS_C
ip -n $NS_S addr add 10.99.0.1/20 dev s0
ip -n $NS_C addr add 10.99.0.2/20 dev c0
ip -n $NS_S link set s0 up; ip -n $NS_C link set c0 up
C() { ip netns exec $NS_C "$@"; }

CL=$RUN/cluster; mkdir -p $CL $RUN/assets/amd64
head -c $((10<<20)) /dev/urandom > $RUN/assets/amd64/vmlinuz
head -c $((60<<20)) /dev/urandom > $RUN/assets/amd64/initramfs.xz
cat > $CL/cluster.yaml <<YAML
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: storm}
spec:
  endpoint: https://10.99.0.11:6443
  boot:
    mode: dhcp
    subnet: 10.99.0.0/20
    range: {start: 10.99.0.100, end: 10.99.15.200}
    router: 10.99.0.1
    leaseTime: 1h
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:00:00:01"], address: 10.99.0.11/20, installDisk: {path: /dev/vda}}
YAML
"$RUN/dodai" init -C $RUN/init >/dev/null 2>&1 && cp $RUN/init/secrets.yaml $CL/secrets.yaml

cat > $RUN/nginx.conf <<NGX
daemon off;
user root;
worker_processes auto;
pid $RUN/nginx.pid;
error_log $RUN/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server { listen 8081 backlog=4096; root $RUN/assets; }
}
NGX
ip netns exec $NS_S nginx -c $RUN/nginx.conf >"$RUN/nginx.log" 2>&1 &
PIDS+=($!)

SP=""
start_dodai() {
  rm -rf $CL/state
  ip netns exec $NS_S "$RUN/dodai" netboot -C $CL --interface s0 --mode dhcp --assets $RUN/assets --ipxe-dir /usr/lib/ipxe \
    --http-addr :8080 --log-format json >"$RUN/dodai.log" 2>&1 &
  SP=$!; PIDS+=($SP)
  for _ in $(seq 200); do grep -q "netboot server running" "$RUN/dodai.log" && return 0; sleep 0.1; done
  cat "$RUN/dodai.log" >&2; exit 1
}
start_dnsmasq() {
  rm -f $RUN/dnsmasq.leases
  cat > $RUN/dnsmasq.conf <<CONF
port=0
interface=s0
bind-interfaces
dhcp-authoritative
dhcp-range=10.99.0.100,10.99.15.200,255.255.240.0,1h
dhcp-lease-max=100000
dhcp-leasefile=$RUN/dnsmasq.leases
no-ping
user=root
enable-tftp
tftp-root=/usr/lib/ipxe
dhcp-boot=snponly.efi,,10.99.0.1
CONF
  ip netns exec $NS_S dnsmasq --keep-in-foreground --conf-file=$RUN/dnsmasq.conf --pid-file=$RUN/dnsmasq.pid >"$RUN/dnsmasq.log" 2>&1 &
  SP=$!; PIDS+=($SP)
  sleep 0.5
  kill -0 $SP || { cat "$RUN/dnsmasq.log" >&2; exit 1; }
}
stop_server() { kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null || true; SP=""; }
kib() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# UDP datagrams the server namespace's kernel dropped for full socket buffers
rcvbuf_errors() { ip netns exec $NS_S awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }
record() { # bench group server rep load1 metrics-json
  printf '{"bench":"%s","group":"%s","server":"%s","rep":%s,"load1":%s,"m":%s}\n' "$@" >> "$RUN/results.jsonl"
}

echo "==> boot storm: $SN machines at once, dodai vs dnsmasq + nginx, $REPS repetitions" >&2
for rep in $(seq "$REPS"); do
  order=(dodai dnsmasq); (( rep % 2 == 0 )) && order=(dnsmasq dodai)
  for s in "${order[@]}"; do
    if [ $s = dodai ]; then
      start_dodai; sleep 0.5
      a0=$(kib $SP RssAnon)
      u=http://10.99.0.1:8080/assets/amd64/vmlinuz,http://10.99.0.1:8080/assets/amd64/initramfs.xz
    else
      start_dnsmasq
      u=http://10.99.0.1:8081/amd64/vmlinuz,http://10.99.0.1:8081/amd64/initramfs.xz
    fi
    l=$(load1); e0=$(rcvbuf_errors)
    res=$(C "$RUN/load" -mode storm -i c0 -n "$SN" -seed $(( rep % 250 + 1 )) -tftp 10.99.0.1:69 -tftp-file snponly.efi -urls $u)
    drops=$(( $(rcvbuf_errors) - e0 ))
    echo "  $s rep $rep: $res, server UDP drops (full socket buffer): $drops" >&2
    record storm "$SN machines at once" "$s" "$rep" "$l" "$(echo "$res" | jq -c --argjson drops $drops '{all_served_ms: (.seconds * 1000), p50_ms, p99_ms,
      dhcp_done_ms: (.dhcp_seconds * 1000), served, failed_dhcp, failed_tftp, failed_http, tftp_retries, udp_drops: $drops}')"
    if [ $s = dodai ]; then
      record storm-memory "dodai netboot, $SN machines" dodai "$rep" "$l" "$(jq -nc --argjson a0 "$a0" --argjson a1 "$(kib $SP RssAnon)" \
        --argjson f1 "$(kib $SP RssFile)" --argjson n "$SN" --argjson lines "$(wc -l < "$RUN/dodai.log")" \
        '{anon_per_1000_machines_kib: (($a1 - $a0) * 1000 / $n), idle_anon_kib: $a0, anon_after_kib: $a1, file_after_kib: $f1, log_lines: $lines}')"
    fi
    stop_server
  done
done

echo "Machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}'), $(nginx -v 2>&1 | cut -d/ -f2)"
"$RUN/report" "$RUN/results.jsonl"
