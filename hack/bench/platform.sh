#!/usr/bin/env bash
# Platform install benchmark: time from `dodai platform install` to all 24
# HelmReleases Ready (ConfigMap charts, real apiserver + Flux), with dodai's
# dependent kick, Flux defaults (30s requeue) and Cozystack's tuning (5s),
# plus a single release (the critical path's unit). Needs the tools built by
# hack/deps/kube.sh. Results go to docs/benchmarks.md (## Platform).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash hack/deps/kube.sh >/dev/null
go test -run '^$' -bench BenchmarkPlatformInstall -benchtime 1x -timeout 40m -v ./test/platformbench/ 2>&1 \
  | grep -E '^(Benchmark|    bench_test|ok|FAIL|---)|s/all-ready'
