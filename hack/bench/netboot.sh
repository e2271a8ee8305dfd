#!/usr/bin/env bash
# Netboot benchmarks (docs/benchmarks.md, "## Netboot"): dodai netboot vs
# dnsmasq (DHCP handshakes/s, 2,000 MACs, concurrency 1 and 32), vs nginx
# with sendfile (HTTP, 50 clients each fetching a 10 MiB kernel and a
# 60 MiB initramfs), and dodai's memory per 1,000 machines seen. Everything
# runs between two network namespaces this script creates (veth); it
# deletes them and kills what it started (by PID) on exit. Needs root and
# hack/deps/netboot.apt (dnsmasq-base, nginx-light, iproute2).
#   usage: hack/bench/netboot.sh            # prints a markdown table
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=$(mktemp -d /tmp/dodai-nb-bench.XXXXXX)
NS_S=dodai-nbb-s-$$
NS_C=dodai-nbb-c-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for ns in $NS_S $NS_C; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

echo "building dodai and the load generator..." >&2
go build -o "$RUN/dodai" ./cmd/dodai
go build -o "$RUN/load" ./hack/bench/netboot-load

ip netns add $NS_S; ip netns add $NS_C
ip -n $NS_S link set lo up; ip -n $NS_C link set lo up
ip -n $NS_S link add s0 type veth peer name c0 netns $NS_C
ip -n $NS_S addr add 10.99.0.1/20 dev s0
ip -n $NS_S link set s0 up; ip -n $NS_C link set c0 up
S() { ip netns exec $NS_S "$@"; }
C() { ip netns exec $NS_C "$@"; }

# cluster dir and assets (10 MiB kernel, 60 MiB initramfs)
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

"$RUN/dodai" init -C $RUN/init >/dev/null && cp $RUN/init/secrets.yaml $CL/secrets.yaml

start_dodai() {
  rm -rf $CL/state
  ip netns exec $NS_S "$RUN/dodai" netboot -C $CL --interface s0 --mode dhcp --assets $RUN/assets --ipxe-dir /usr/lib/ipxe \
    --http-addr :8080 --log-format json >"$RUN/dodai.log" 2>&1 &
  DPID=$!; PIDS+=($DPID)
  for _ in $(seq 100); do grep -q "netboot server running" "$RUN/dodai.log" && return 0; sleep 0.1; done
  cat "$RUN/dodai.log" >&2; exit 1
}
stop_pid() { kill "$1"; wait "$1" 2>/dev/null || true; }
start_dnsmasq() { # $1: extra config line (e.g. leasefile-ro)
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
  MPID=$!; PIDS+=($MPID)
  sleep 0.5
}
rss_kb() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }
# the dodai process is the child of `ip netns exec` (which execs: same PID)
load() { C "$RUN/load" -mode dhcp -i c0 "$@"; }
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }

declare -A R
for c in 1 32; do
  start_dnsmasq
  R[dnsmasq_$c]=$(load -n 2000 -c $c -seed $((c+10)))
  stop_pid $MPID
  start_dnsmasq leasefile-ro
  R[dnsmasqro_$c]=$(load -n 2000 -c $c -seed $((c+30)))
  stop_pid $MPID
  start_dodai
  before=$(rss_kb $DPID)
  R[dodai_$c]=$(load -n 2000 -c $c -seed $((c+20)))
  sleep 1.5 # let the registry flush
  after=$(rss_kb $DPID)
  R[rss_$c]="$before $after"
  stop_pid $DPID
done

# HTTP: dodai vs nginx (sendfile) on the same files
C ip addr add 10.99.0.2/20 dev c0
start_dodai
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
NPID=$!; PIDS+=($NPID)
sleep 0.5
R[http_dodai]=$(C "$RUN/load" -mode http -c 50 -urls http://10.99.0.1:8080/assets/amd64/vmlinuz,http://10.99.0.1:8080/assets/amd64/initramfs.xz)
R[http_nginx]=$(C "$RUN/load" -mode http -c 50 -urls http://10.99.0.1:8081/amd64/vmlinuz,http://10.99.0.1:8081/amd64/initramfs.xz)
R[http_dodai2]=$(C "$RUN/load" -mode http -c 50 -urls http://10.99.0.1:8080/assets/amd64/vmlinuz,http://10.99.0.1:8080/assets/amd64/initramfs.xz)
R[http_nginx2]=$(C "$RUN/load" -mode http -c 50 -urls http://10.99.0.1:8081/amd64/vmlinuz,http://10.99.0.1:8081/amd64/initramfs.xz)

for k in "${!R[@]}"; do echo "$k: ${R[$k]}" >&2; done
d1=$(echo "${R[dodai_1]}" | field handshakes_per_second); m1=$(echo "${R[dnsmasq_1]}" | field handshakes_per_second)
d32=$(echo "${R[dodai_32]}" | field handshakes_per_second); m32=$(echo "${R[dnsmasq_32]}" | field handshakes_per_second)
r1=$(echo "${R[dnsmasqro_1]}" | field handshakes_per_second); r32=$(echo "${R[dnsmasqro_32]}" | field handshakes_per_second)
hd=$(echo "${R[http_dodai]} ${R[http_dodai2]}" | grep -oE '"mb_per_second":[0-9.]+' | cut -d: -f2 | sort -n | tail -1)
hn=$(echo "${R[http_nginx]} ${R[http_nginx2]}" | grep -oE '"mb_per_second":[0-9.]+' | cut -d: -f2 | sort -n | tail -1)
read -r b1 a1 <<<"${R[rss_1]}"; read -r b32 a32 <<<"${R[rss_32]}"
cat <<MD
| Benchmark | dodai netboot | reference | ratio |
|---|---|---|---|
| DHCP handshakes/s, 2,000 MACs, 1 at a time | $(printf %.0f $d1) | dnsmasq $(printf %.0f $m1) | $(echo "scale=2; $d1/$m1" | bc)× |
| DHCP handshakes/s, 2,000 MACs, 32 concurrent | $(printf %.0f $d32) | dnsmasq $(printf %.0f $m32) | $(echo "scale=2; $d32/$m32" | bc)× |
| same, dnsmasq without a lease file (leasefile-ro), 1 / 32 concurrent | $(printf %.0f $d1) / $(printf %.0f $d32) | dnsmasq $(printf %.0f $r1) / $(printf %.0f $r32) | $(echo "scale=2; $d1/$r1" | bc)× / $(echo "scale=2; $d32/$r32" | bc)× |
| HTTP MB/s, 50 clients × (10 MiB + 60 MiB) (best of 2) | $(printf %.0f $hd) | nginx sendfile $(printf %.0f $hn) | $(echo "scale=2; $hd/$hn" | bc)× |
| RSS growth per 1,000 machines seen (2,000 leases + registry) | $(( (a1-b1)/2 )) KiB (c=1), $(( (a32-b32)/2 )) KiB (c=32) | RSS $b32 → $a32 KiB | |
MD
