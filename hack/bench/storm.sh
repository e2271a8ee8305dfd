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
. hack/bench/lib/netboot-lab.sh
bench_deadline "$@"
REPS="${1:-7}"
SN="${STORM_N:-1000}"
[ -f /usr/lib/ipxe/snponly.efi ] || { echo "missing /usr/lib/ipxe/snponly.efi (package ipxe)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"  # a socket per TFTP transfer and HTTP connection
bench_lab storm
ip -n "$NS_C" addr add 10.99.0.2/20 dev c0
bench_cluster storm
start_nginx 4096

# UDP datagrams the server namespace's kernel dropped for full socket buffers
rcvbuf_errors() { ip netns exec $NS_S awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }

echo "==> boot storm: $SN machines at once, dodai vs dnsmasq + nginx, $REPS repetitions" >&2
for rep in $(seq "$REPS"); do
  order=(dodai dnsmasq); (( rep % 2 == 0 )) && order=(dnsmasq dodai)
  for s in "${order[@]}"; do
    if [ $s = dodai ]; then
      start_dodai; sleep 0.5
      a0=$(kib $SP RssAnon)
      u=http://10.99.0.1:8080/assets/amd64/vmlinuz,http://10.99.0.1:8080/assets/amd64/initramfs.xz
    else
      start_dnsmasq enable-tftp tftp-root=/usr/lib/ipxe dhcp-boot=snponly.efi,,10.99.0.1
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

bench_report
