# The lab of the netboot benchmarks (hack/bench/netboot.sh, storm.sh),
# sourced by them, not run: the deadline, two network namespaces this
# script creates, joined by a veth (server s0 10.99.0.1/20 in $NS_S, client
# c0 in $NS_C, no address: the caller adds one when it needs it), their
# cleanup (kills what was started, by PID, and deletes the namespaces), the
# binaries, a cluster directory, and starting/stopping the servers. No
# traffic leaves the two namespaces.

# bench_deadline "$@": re-runs the script under `timeout $DEADLINE` (the
# cleanup trap runs on its SIGTERM). Call it first.
bench_deadline() {
  [ -z "${DODAI_BENCH_INNER:-}" ] || return 0
  exec timeout -k 15 "${DEADLINE:-3600}" env DODAI_BENCH_INNER=1 bash "$0" "$@"
}

# bench_lab TAG: checks root and the tools, then creates $RUN (a temp
# directory), the namespaces $NS_S and $NS_C and the binaries $RUN/dodai,
# $RUN/load (netboot-load) and $RUN/report.
bench_lab() {
  [ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
  local t
  for t in dnsmasq nginx ip jq go; do command -v $t >/dev/null || { echo "missing $t (hack/deps/netboot.apt)" >&2; exit 1; }; done
  RUN=$(mktemp -d "/tmp/dodai-$1.XXXXXX")
  NS_S=dodai-$1-s-$$
  NS_C=dodai-$1-c-$$
  PIDS=()
  SP=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM

  echo "==> building dodai, the load generator and the report" >&2
  go build -o "$RUN/dodai" ./cmd/dodai
  go build -o "$RUN/load" ./hack/bench/netboot-load
  go build -o "$RUN/report" ./hack/bench/report

  ip netns add "$NS_S"; ip netns add "$NS_C"
  ip -n "$NS_S" link set lo up; ip -n "$NS_C" link set lo up
  ip -n "$NS_S" link add s0 type veth peer name c0 netns "$NS_C"
  ip -n "$NS_S" addr add 10.99.0.1/20 dev s0
  ip -n "$NS_S" link set s0 up; ip -n "$NS_C" link set c0 up
}

bench_cleanup() {
  set +e
  local p ns
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for ns in $NS_S $NS_C; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  [ -n "${OUT:-}" ] && cp "$RUN/results.jsonl" "$OUT" 2>/dev/null
  rm -rf "$RUN"
}

# C CMD...: runs CMD in the client namespace.
C() { ip netns exec "$NS_C" "$@"; }

# bench_cluster NAME: a dhcp-mode cluster directory $CL (range
# 10.99.0.100-10.99.15.200, one node) with secrets, and $RUN/assets
# (10 MiB kernel, 60 MiB initramfs of random data).
bench_cluster() {
  CL=$RUN/cluster; mkdir -p "$CL" "$RUN/assets/amd64"
  head -c $((10<<20)) /dev/urandom > "$RUN/assets/amd64/vmlinuz"
  head -c $((60<<20)) /dev/urandom > "$RUN/assets/amd64/initramfs.xz"
  cat > "$CL/cluster.yaml" <<YAML
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: $1}
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
  "$RUN/dodai" init -C "$RUN/init" >/dev/null 2>&1 && cp "$RUN/init/secrets.yaml" "$CL/secrets.yaml"
}

# start_dodai [FLAGS]: dodai netboot --mode dhcp on s0 (HTTP :8080), fresh
# state; its PID in $SP.
start_dodai() {
  rm -rf "$CL/state"
  # shellcheck disable=SC2086 # FLAGS are words
  ip netns exec "$NS_S" "$RUN/dodai" netboot -C "$CL" --interface s0 --mode dhcp --assets "$RUN/assets" --ipxe-dir /usr/lib/ipxe \
    --http-addr :8080 --log-format json ${1:-} >"$RUN/dodai.log" 2>&1 &
  SP=$!; PIDS+=($SP)
  for _ in $(seq 200); do grep -q "netboot server running" "$RUN/dodai.log" && return 0; sleep 0.1; done
  cat "$RUN/dodai.log" >&2; exit 1
}

# start_dnsmasq [LINE...]: dnsmasq, DHCP only, for the same range with a
# lease file, plus the given config lines; its PID in $SP.
start_dnsmasq() {
  rm -f "$RUN/dnsmasq.leases"
  {
    cat <<CONF
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
    [ $# = 0 ] || printf '%s\n' "$@"
  } > "$RUN/dnsmasq.conf"
  ip netns exec "$NS_S" dnsmasq --keep-in-foreground --conf-file="$RUN/dnsmasq.conf" --pid-file="$RUN/dnsmasq.pid" >"$RUN/dnsmasq.log" 2>&1 &
  SP=$!; PIDS+=($SP)
  sleep 0.5
  kill -0 $SP || { cat "$RUN/dnsmasq.log" >&2; exit 1; }
}

stop_server() { kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null || true; SP=""; }

# start_nginx CONNS: nginx (sendfile) serving $RUN/assets on :8081, CONNS
# connections per worker and listen backlog.
start_nginx() {
  cat > "$RUN/nginx.conf" <<NGX
daemon off;
user root;
worker_processes auto;
pid $RUN/nginx.pid;
error_log $RUN/nginx.err;
events { worker_connections $1; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server { listen 8081 backlog=$1; root $RUN/assets; }
}
NGX
  ip netns exec "$NS_S" nginx -c "$RUN/nginx.conf" >"$RUN/nginx.log" 2>&1 &
  PIDS+=($!)
}

kib() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }
load1() { cut -d' ' -f1 /proc/loadavg; }
record() { # bench group server rep load1 metrics-json
  printf '{"bench":"%s","group":"%s","server":"%s","rep":%s,"load1":%s,"m":%s}\n' "$@" >> "$RUN/results.jsonl"
}

# bench_report: the machine line and the report of $RUN/results.jsonl.
bench_report() {
  echo "Machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}'), $(nginx -v 2>&1 | cut -d/ -f2)"
  "$RUN/report" "$RUN/results.jsonl"
}
