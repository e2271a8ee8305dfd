#!/usr/bin/env bash
# PXE boot benchmark (docs/benchmarks.md, "PXE boot"): QEMU BIOS (SeaBIOS +
# iPXE ROM) and UEFI (OVMF PXE → TFTP snponly.efi → iPXE) boot into a probe
# initramfs, from dodai netboot (dhcp mode) and from dnsmasq (full DHCP +
# TFTP) + nginx (iPXE script, kernel, initramfs), interleaved, REPS times.
# Time: QEMU start until the probe's OS got its address by DHCP. Runs
# TestPXEBootBenchmark of test/netboot, which creates a network namespace
# per boot (bridge + tap) and deletes it; nothing touches a real interface.
# The report also splits each boot into phases, each ending at a line of the
# serial console: firmware (until iPXE starts: SeaBIOS, or OVMF's DHCP +
# TFTP), ipxe (until the kernel's first line: iPXE's DHCP, HTTP downloads,
# decompression), kernel (until the probe's /init), os_dhcp (until the
# probe's DHCP succeeded).
#   usage: [LOGS=DIR] [OUT=FILE.jsonl] hack/bench/pxeboot.sh [REPS]   (root; default 5)
# LOGS keeps every boot's console and server log there; OUT the raw lines.
# Needs hack/deps/netboot.apt (qemu-system-x86, ovmf, ipxe, dnsmasq-base,
# nginx-light, linux-image-amd64, busybox-static, cpio) and Go.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS="${1:-5}"
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/dodai-pxe-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go test -c -o "$WORK/netboot.test" ./test/netboot
go build -o "$WORK/report" ./hack/bench/report
# One QEMU (one TCG vCPU) at a time; the test bounds each boot to 240 s.
DODAI_PXE_BENCH="$REPS" DODAI_PXE_BENCH_OUT="$WORK/results.jsonl" DODAI_PXE_BENCH_LOGS="${LOGS:-}" \
  "$WORK/netboot.test" -test.run '^TestPXEBootBenchmark$' -test.v -test.timeout "$(( REPS * 4 * 240 + 120 ))s" >&2
[ -z "${OUT:-}" ] || cp "$WORK/results.jsonl" "$OUT"
echo "Machine: $(nproc) cores, $(uname -r), qemu $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}')"
"$WORK/report" "$WORK/results.jsonl"
