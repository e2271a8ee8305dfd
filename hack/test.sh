#!/usr/bin/env bash
# Runs every dodai test on a fresh Debian machine.
# 1. installs the Debian packages listed in hack/deps/*.apt (as root; skipped
#    when they are all present),
# 2. runs hack/deps/*.sh, which build test tools (kube-apiserver, etcd, Flux
#    controllers, ...) from Go modules into $DODAI_TOOLS_DIR, cached by version,
# 3. vets, lints (hack/lint.sh: golangci-lint with .golangci.yml) and runs the
#    whole Go test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export DODAI_TOOLS_DIR="${DODAI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dodai/tools}"
mkdir -p "$DODAI_TOOLS_DIR"

pkgs=()
for f in hack/deps/*.apt; do
  [ -e "$f" ] || continue
  while read -r p _; do
    [ -z "$p" ] || [ "${p#\#}" != "$p" ] && continue
    dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
  done < "$f"
done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

for f in hack/deps/*.sh; do
  [ -e "$f" ] || continue
  echo "==> $f"
  bash "$f"
done

echo "==> go vet ./..."
go vet ./...
echo "==> hack/lint.sh"
./hack/lint.sh
echo "==> go test ./..."
go test -count=1 -timeout 40m ./... 2>&1 | tee "${DODAI_TEST_LOG:-/dev/null}"
