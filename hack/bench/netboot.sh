#!/usr/bin/env bash
# Netboot benchmarks (docs/benchmarks.md, "Netboot"): dodai netboot against
# dnsmasq for DHCP (complete handshakes for fresh MACs, one at a time and 32
# at once: throughput, p50/p99 latency, server CPU per handshake), against
# nginx with sendfile for HTTP (50 clients each fetching a 10 MiB kernel and
# a 60 MiB initramfs), and dodai's memory (anonymous and file-mapped, idle
# and per 1,000 machines).
#
# Every run starts its server fresh; runs are interleaved (the server order
# alternates from one repetition to the next) and repeated REPS times; the
# report gives median and best per server and the load average. Everything
# runs between two network namespaces this script creates (a veth pair),
# never on a real interface; it deletes them and kills what it started (by
# PID) on exit, and is bounded by DEADLINE seconds.
#
#   usage: hack/bench/netboot.sh [REPS]        (root; default 7 repetitions)
#   env:   N=2000 MACs per DHCP run, LEASEFILE=0 skips dnsmasq with its lease
#          file (slow: it rewrites and fsyncs the file per lease), HTTP=0
#          skips HTTP, OUT=FILE keeps the per-run JSON lines.
# Needs hack/deps/netboot.apt (dnsmasq-base, nginx-light, iproute2) and Go.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEADLINE="${DEADLINE:-3600}"
if [ -z "${NETBOOT_BENCH_INNER:-}" ]; then
  exec timeout -k 15 "$DEADLINE" env NETBOOT_BENCH_INNER=1 bash "$0" "$@"
fi
REPS="${1:-7}"
N="${N:-2000}"
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
for t in dnsmasq nginx ip jq go; do command -v $t >/dev/null || { echo "missing $t (hack/deps/netboot.apt)" >&2; exit 1; }; done

RUN=$(mktemp -d /tmp/dodai-nb-bench.XXXXXX)
NS_S=dodai-nbb-s-$$
NS_C=dodai-nbb-c-$$
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
ip -n $NS_S link set s0 up; ip -n $NS_C link set c0 up
C() { ip netns exec $NS_C "$@"; }

# cluster dir and assets (10 MiB kernel, 60 MiB initramfs of random data)
CL=$RUN/cluster; mkdir -p $CL $RUN/assets/amd64
head -c $((10<<20)) /dev/urandom > $RUN/assets/amd64/vmlinuz
head -c $((60<<20)) /dev/urandom > $RUN/assets/amd64/initramfs.xz
cat > $CL/cluster.yaml <<YAML
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: bench}
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

SP=""
start_dodai() { # $1: extra flags
  rm -rf $CL/state
  ip netns exec $NS_S "$RUN/dodai" netboot -C $CL --interface s0 --mode dhcp --assets $RUN/assets --ipxe-dir /usr/lib/ipxe \
    --http-addr :8080 --log-format json ${1:-} >"$RUN/dodai.log" 2>&1 &
  SP=$!; PIDS+=($SP)
  for _ in $(seq 200); do grep -q "netboot server running" "$RUN/dodai.log" && return 0; sleep 0.1; done
  cat "$RUN/dodai.log" >&2; exit 1
}
start_dnsmasq() { # $1: extra config line (leasefile-ro)
  rm -f $RUN/dnsmasq.leases
  cat > $RUN/dnsmasq.conf <<CONF
${1:-}
port=0
interface=s0
bind-interfaces
dhcp-authoritative
dhcp-range=10.99.0.100,10.99.15.200,255.255.240.0,1h
dhcp-lease-max=100000
dhcp-leasefile=$RUN/dnsmasq.leases
no-ping
user=root
CONF
  ip netns exec $NS_S dnsmasq --keep-in-foreground --conf-file=$RUN/dnsmasq.conf --pid-file=$RUN/dnsmasq.pid >"$RUN/dnsmasq.log" 2>&1 &
  SP=$!; PIDS+=($SP)
  sleep 0.5
  kill -0 $SP || { cat "$RUN/dnsmasq.log" >&2; exit 1; }
}
stop_server() { kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null || true; SP=""; }
# on-CPU time of every thread of a process, in ns (schedstat)
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }
kib() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }
load1() { cut -d' ' -f1 /proc/loadavg; }
record() { # bench group server rep load1 metrics-json
  printf '{"bench":"%s","group":"%s","server":"%s","rep":%s,"load1":%s,"m":%s}\n' "$@" >> "$RUN/results.jsonl"
}

run_dhcp() { # server c rep
  local s=$1 c=$2 rep=$3 l a0 f0 c0 c1 res
  case $s in
    dodai) start_dodai ;;
    dodai-sync) start_dodai "--lease-durability sync" ;;
    dnsmasq-ro) start_dnsmasq leasefile-ro ;;
    dnsmasq) start_dnsmasq ;;
  esac
  sleep 0.5
  l=$(load1); a0=$(kib $SP RssAnon); f0=$(kib $SP RssFile); c0=$(cpu_ns $SP)
  res=$(C "$RUN/load" -mode dhcp -i c0 -n "$N" -c "$c" -seed $(( (rep * 7 + c) % 250 + 1 )))
  c1=$(cpu_ns $SP)
  echo "  $s c=$c rep $rep: $res" >&2
  record dhcp "$N MACs, c=$c" "$s" "$rep" "$l" "$(echo "$res" | jq -c --argjson cpu $((c1 - c0)) \
    '{handshakes_s: .handshakes_per_second, p50_ms, p99_ms, server_cpu_us: ($cpu / 1000 / ([.ok,1]|max)), naks, failed}')"
  if [ "$s" = dodai ] && [ "$c" = 32 ]; then
    sleep 2 # the registry's save and the lease journal's sync
    record memory "dodai netboot" dodai "$rep" "$l" "$(jq -nc --argjson a0 "$a0" --argjson f0 "$f0" --argjson a1 "$(kib $SP RssAnon)" \
      --argjson f1 "$(kib $SP RssFile)" --argjson n "$N" --argjson lines "$(wc -l < "$RUN/dodai.log")" \
      '{anon_per_1000_machines_kib: (($a1 - $a0) * 1000 / $n), idle_anon_kib: $a0, idle_file_kib: $f0, anon_after_kib: $a1, file_after_kib: $f1, log_lines: $lines}')"
  fi
  stop_server
}

servers=(dodai dodai-sync dnsmasq-ro)
[ "${LEASEFILE:-1}" = 1 ] && servers+=(dnsmasq)
echo "==> DHCP: ${servers[*]}, $N MACs, c=1 and c=32, $REPS repetitions" >&2
for rep in $(seq "$REPS"); do
  order=("${servers[@]}")
  if (( rep % 2 == 0 )); then order=(); for ((i=${#servers[@]}-1; i>=0; i--)); do order+=("${servers[$i]}"); done; fi
  for c in 1 32; do
    for s in "${order[@]}"; do run_dhcp "$s" "$c" "$rep"; done
  done
done

if [ "${HTTP:-1}" = 1 ]; then
  echo "==> HTTP: 50 clients × (10 MiB + 60 MiB), $REPS repetitions" >&2
  C ip addr add 10.99.0.2/20 dev c0
  start_dodai; DP=$SP
  cat > $RUN/nginx.conf <<NGX
daemon off;
user root;
worker_processes auto;
pid $RUN/nginx.pid;
error_log $RUN/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server { listen 8081 backlog=1024; root $RUN/assets; }
}
NGX
  ip netns exec $NS_S nginx -c $RUN/nginx.conf >"$RUN/nginx.log" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  for rep in $(seq "$REPS"); do
    order=(dodai nginx); (( rep % 2 == 0 )) && order=(nginx dodai)
    for s in "${order[@]}"; do
      if [ $s = dodai ]; then u=http://10.99.0.1:8080/assets/amd64/vmlinuz,http://10.99.0.1:8080/assets/amd64/initramfs.xz
      else u=http://10.99.0.1:8081/amd64/vmlinuz,http://10.99.0.1:8081/amd64/initramfs.xz; fi
      l=$(load1)
      res=$(C "$RUN/load" -mode http -c 50 -urls $u)
      echo "  $s rep $rep: $res" >&2
      record http "50 clients × (10 MiB + 60 MiB)" $s $rep $l "$(echo "$res" | jq -c '{throughput_mb_s: .mb_per_second, all_done_ms: (.seconds * 1000), failed}')"
    done
  done
  SP=$DP; stop_server
fi

echo "Machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}'), $(nginx -v 2>&1 | cut -d/ -f2)"
"$RUN/report" "$RUN/results.jsonl"
