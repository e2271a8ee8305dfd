#!/usr/bin/env bash
# Rollout benchmark (issue #10): a Talos upgrade of 3 control-plane + 50
# worker fake nodes (test/faketalos, each with its Node in a real
# kube-apiserver), timed for `dodai apply --max-unavailable 1` and `10%`
# against talm's one-node-per-call loop, interleaved. Usage:
#   hack/bench/rollout.sh [REPETITIONS]      (default 3; ~3 min each at R = 1 s)
# DODAI_ROLLOUT_BENCH_WORKERS and DODAI_ROLLOUT_BENCH_REBOOT (the fake
# reboot time R) change the cluster. Needs the tools built by
# hack/deps/kube.sh; loopback only. Results go to docs/benchmarks.md
# (## Rollout).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash hack/deps/kube.sh >/dev/null
reps=${1:-3}
DODAI_ROLLOUT_BENCH=$reps nice -n 10 go test -count=1 -v -timeout "$((reps * 10 + 10))m" \
  -run '^TestRolloutBenchmark$' ./test/rollout 2>&1 | grep -vE '^=== |^\s+(I|W|E)[0-9]{4} '
