#!/usr/bin/env bash
# Interop tests: the official TypeScript and Python MCP SDK clients against the server binary.
#
#   tests/interop/run.sh BIN NODE NODE_MODULES PYTHON
#
#   BIN           the server binary (tests/run.sh passes target/debug/whatsapp-mcp-stream)
#   NODE          node >= 18 (tests/run.sh passes Node 22)
#   NODE_MODULES  a node_modules folder holding @modelcontextprotocol/sdk
#   PYTHON        a python with the pip package mcp (1.x)
#
# Servers: no token; ACCESS_TOKEN set (clients with the bearer header pass, without it they must
# fail with 401); MCP_HTTP_ENABLE_JSON_RESPONSE=0 (answers as SSE). Each runs on a free loopback
# port with its own data dir and is killed on exit. Last line: "interop: N passed, M failed".
set -euo pipefail

if [ $# -ne 4 ]; then
  sed -n '4,10p' "$0" >&2
  exit 2
fi
BIN=$1 NODE=$2 NODE_MODULES=$3 PY=$4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for f in "$BIN" "$NODE" "$PY"; do
  [ -x "$f" ] || { echo "interop: $f is not an executable file" >&2; exit 2; }
done
[ -d "$NODE_MODULES/@modelcontextprotocol/sdk" ] || { echo "interop: no @modelcontextprotocol/sdk in $NODE_MODULES" >&2; exit 2; }
export MCP_NODE_MODULES=$NODE_MODULES

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wams-interop.XXXXXX")
SERVER_PID=
PASSED=0
FAILED=0
FAILURES=()

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME [VAR=value]...: a server with a clean environment plus the given variables.
start_server() {
  local name=$1
  shift
  stop_server
  PORT=$(free_port)
  URL=http://127.0.0.1:$PORT/mcp
  SERVER_LOG=$WORK/$name.server.log
  mkdir -p "$WORK/$name.data"
  env -u ACCESS_TOKEN -u MCP_HTTP_ENABLE_JSON_RESPONSE -u READ_ONLY -u TRANSPORT -u LISTEN -u DATA_DIR \
    -u ALLOWED_HOSTS -u PUBLIC_BASE_URL -u MEDIA_PUBLIC_BASE_URL RUST_LOG=info "$@" \
    "$BIN" --listen "127.0.0.1:$PORT" --data-dir "$WORK/$name.data" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  # Ready when /healthz answers 200; give up after 20 s or when the process exits.
  if ! python3 - "$PORT" "$SERVER_PID" <<'EOF'; then
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
        if open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
            raise ProcessLookupError
    except ProcessLookupError:
        print(f"the server exited before it was ready", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.01)
print("the server was not ready within 20 s", file=sys.stderr)
sys.exit(1)
EOF
    echo "interop: server '$name' did not start; its log:" >&2
    cat "$SERVER_LOG" >&2
    return 1
  fi
  local shown=("$@")
  shown=("${shown[@]/#ACCESS_TOKEN=*/ACCESS_TOKEN=(random)}")
  echo "-- server '$name' on $URL (pid $SERVER_PID)${shown[*]:+ with ${shown[*]}}"
}

# check NAME EXPECT(pass|fail-401) CMD...: runs one client and records the outcome.
check() {
  local name=$1 expect=$2
  shift 2
  local out=$WORK/client.out rc=0 t0=$SECONDS
  timeout 60 "$@" >"$out" 2>&1 || rc=$?
  local ok=false
  case "$expect" in
    pass) [ "$rc" = 0 ] && ok=true ;;
    fail-401) [ "$rc" != 0 ] && grep -q '401' "$out" && ok=true ;;
  esac
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    ok=false
    echo "(the server is no longer running)" >>"$out"
  fi
  if $ok; then
    PASSED=$((PASSED + 1))
    echo "PASS $name ($((SECONDS - t0))s)"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    echo "FAIL $name (exit $rc, expected: $expect); client output:"
    sed 's/^/    /' "$out"
    echo "  server log (last 30 lines):"
    tail -n 30 "$SERVER_LOG" | sed 's/^/    /'
  fi
}

TS=("$NODE" "$HERE/ts_client.mjs")
PYC=("$PY" "$HERE/py_client.py")
server_or_fail() { # name, env...: a server that does not start fails the checks that need it
  if start_server "$@"; then return 0; fi
  FAILED=$((FAILED + 1))
  FAILURES+=("start server $1")
  return 1
}

echo "interop: server $BIN"
echo "interop: $("$NODE" --version) (node), $("$PY" -c 'import importlib.metadata as m, sys; print("python", sys.version.split()[0], "mcp", m.version("mcp"))')"

if server_or_fail json; then
  check "ts no-auth json" pass "${TS[@]}" "$URL" --answers json
  check "py no-auth json" pass "${PYC[@]}" "$URL" --answers json
fi

TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
if server_or_fail bearer "ACCESS_TOKEN=$TOKEN"; then
  check "ts bearer" pass "${TS[@]}" "$URL" --header "Authorization: Bearer $TOKEN"
  check "py bearer" pass "${PYC[@]}" "$URL" --header "Authorization: Bearer $TOKEN"
  check "ts bearer missing -> 401" fail-401 "${TS[@]}" "$URL"
  check "py bearer missing -> 401" fail-401 "${PYC[@]}" "$URL"
  check "ts bearer wrong -> 401" fail-401 "${TS[@]}" "$URL" --header "Authorization: Bearer x$TOKEN"
fi

if server_or_fail sse MCP_HTTP_ENABLE_JSON_RESPONSE=0; then
  check "ts sse" pass "${TS[@]}" "$URL" --answers sse
  check "py sse" pass "${PYC[@]}" "$URL" --answers sse
fi
stop_server

for f in "${FAILURES[@]}"; do echo "failed: $f"; done
echo "interop: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
