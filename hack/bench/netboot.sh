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
. hack/bench/lib/netboot-lab.sh
bench_deadline "$@"
REPS="${1:-7}"
N="${N:-2000}"
bench_lab nbb
bench_cluster bench

# on-CPU time of every thread of a process, in ns (schedstat)
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }

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
  start_nginx 1024
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

bench_report
