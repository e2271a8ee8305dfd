# Sourced by the hack/deps/*.sh tool builds (not run on its own): one cached build of a set of
# tools into $DODAI_TOOLS_DIR/<name>-<key>, with $DODAI_TOOLS_DIR/<name> a symlink to the complete
# one. Concurrent runs (several worktrees share one tools dir) are serialized by a flock.
#
#   toolcache_begin NAME KEY   lock; if NAME-KEY is complete, point the link and exit 0;
#                              else set $dest and an empty $tmp (removed on exit) to build into
#   ...build into $tmp, write $tmp/.complete...
#   toolcache_finish           move $tmp to $dest and point the link

export DODAI_TOOLS_DIR="${DODAI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dodai/tools}"
mkdir -p "$DODAI_TOOLS_DIR"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

toolcache_point_link() {
  ln -sfn "$toolcache_name-$toolcache_key" "$DODAI_TOOLS_DIR/$toolcache_name.tmp.$$"
  mv -T "$DODAI_TOOLS_DIR/$toolcache_name.tmp.$$" "$DODAI_TOOLS_DIR/$toolcache_name"
}

toolcache_begin() { # toolcache_begin <name> <key>
  toolcache_name=$1 toolcache_key=$2
  dest="$DODAI_TOOLS_DIR/$1-$2"
  exec 9>"$DODAI_TOOLS_DIR/.$1.lock"
  flock 9
  if [ -f "$dest/.complete" ]; then
    toolcache_point_link
    echo "$1 tools: cached in $dest"
    exit 0
  fi
  tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin"
}

toolcache_finish() {
  rm -rf "$dest"
  mv "$tmp" "$dest"
  trap - EXIT
  toolcache_point_link
}
