#!/usr/bin/env bash
# Runs golangci-lint (version pinned in hack/tools/go.mod, built and cached
# by hack/deps/lint.sh) with the repository's .golangci.yml over every
# package. Arguments are passed on (e.g. hack/lint.sh ./internal/cli/...).
set -euo pipefail
cd "$(dirname "$0")/.."
export DODAI_TOOLS_DIR="${DODAI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dodai/tools}"
bash hack/deps/lint.sh >&2
if [ $# -eq 0 ]; then
  set -- ./...
fi
# --allow-serial-runners: a second run (another worktree) waits for the
# first instead of failing.
exec "$DODAI_TOOLS_DIR/golangci-lint/golangci-lint" run --allow-serial-runners "$@"
