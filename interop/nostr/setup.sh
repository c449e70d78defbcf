#!/usr/bin/env bash
# Installs the Nostr interop peer (nostr-tools from the npm registry, run with
# the machine's Node) OUTSIDE the clone, from the committed lockfile.
# Idempotent: a stamp (hash of package.json, package-lock.json and the recipe
# version below) makes a second run a quick check.
#
#   interop/nostr/setup.sh [install dir]
#
# The install dir is the argument, else $HERALD_INTEROP_NOSTR_DIR, else
# /var/tmp/herald-interop-nostr. Needs node and npm; nostr-tools 2.25.2 and its
# @noble/@scure dependencies declare Node >= 20.19, so the node on PATH must be
# at least that (no separate Node is installed). Progress goes to stderr;
# stdout gets exactly two lines to eval:
#
#   export HERALD_TEST_NODE=<absolute path of node>
#   export HERALD_TEST_NOSTR_MODULES=<install dir>
#
# so CI does:   nostr_env="$(bash interop/nostr/setup.sh)"; eval "$nostr_env"
# (an assignment, so that `set -e` sees a failure; `eval "$(…)"` would not).
# Any failure exits non-zero.
set -euo pipefail

# Bump when the install steps change in a way the lockfile hash cannot see.
RECIPE=1
# nostr-tools' and @noble's `engines`.
MIN_NODE_MAJOR=20
MIN_NODE_MINOR=19

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${HERALD_INTEROP_NOSTR_DIR:-/var/tmp/herald-interop-nostr}}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

say() { echo "nostr setup: $*" >&2; }
die() { echo "nostr setup: FATAL: $*" >&2; exit 1; }
trap 'echo "nostr setup: FATAL: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

for tool in node npm; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
node="$(command -v node)"
node="$(cd "$(dirname "$node")" && pwd)/$(basename "$node")"
v="$("$node" --version)"
IFS=. read -r major minor _ <<<"${v#v}"
if [ "$major" -lt "$MIN_NODE_MAJOR" ] ||
  { [ "$major" -eq "$MIN_NODE_MAJOR" ] && [ "$minor" -lt "$MIN_NODE_MINOR" ]; }; then
  die "$node is $v; nostr-tools needs Node >= $MIN_NODE_MAJOR.$MIN_NODE_MINOR"
fi

stamp_file="$dest/.herald-setup-stamp"
stamp="$(cat "$here/package.json" "$here/package-lock.json" <(echo "recipe $RECIPE") | sha256sum | cut -d' ' -f1)"

# The peer works: events.mjs signs a batch, keys line first.
quick_check() {
  local out
  out="$(echo '{}' | "$node" "$here/events.mjs" "$dest" 2>/dev/null)" || return 1
  [[ "$out" == '{"name":"keys",'* ]]
}

print_env() {
  printf 'export HERALD_TEST_NODE=%q\n' "$node"
  printf 'export HERALD_TEST_NOSTR_MODULES=%q\n' "$dest"
}

# One setup at a time per install dir.
if command -v flock >/dev/null; then
  exec 9>"$dest/.herald-setup.lock"
  flock 9
fi

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  if quick_check; then
    say "up to date in $dest (Node $v)"
    print_env
    exit 0
  fi
  say "stamp matches but the install is broken: reinstalling"
fi

started=$SECONDS
rm -f "$stamp_file"
cp "$here/package.json" "$here/package-lock.json" "$dest/"

# No package in the lockfile has an install script; --ignore-scripts keeps it so.
say "npm ci into $dest"
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

say "signing a first batch with events.mjs"
echo '{}' | "$node" "$here/events.mjs" "$dest" >"$dest/.herald-setup-check.out" 2>"$dest/.herald-setup-check.log" ||
  { cat "$dest/.herald-setup-check.log" >&2; die "events.mjs failed"; }
quick_check || { cat "$dest/.herald-setup-check.log" >&2; die "events.mjs printed no keys line first"; }

echo "$stamp" >"$stamp_file"
say "installed in $((SECONDS - started)) s: nostr-tools for Node $v in $dest"
print_env
