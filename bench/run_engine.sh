#!/usr/bin/env bash
# Engine benchmark against fakewa: builds fakewa (debug), the stripped release binary, and a
# release binary with the test-network feature in its own target dir (only that build accepts
# WA_WS_URL / WA_TEST_CA), then runs benches/engine_bench.rs, which prints name=value lines
# (connect_ms, idle_connected_rss_kb, binary_bytes). Takes about 70 s after the builds.
#
#   bench/run_engine.sh        # IDLE_SECS=5 for a quick try
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -p fakewa
cargo build --release
CARGO_TARGET_DIR=$PWD/target/bench-net cargo build --release --features test-network
export FAKEWA=${FAKEWA:-$TARGET_DIR/debug/fakewa}
export BIN=${BIN:-$TARGET_DIR/release/whatsapp-mcp-stream}
export NET_BIN=${NET_BIN:-$PWD/target/bench-net/release/whatsapp-mcp-stream}
exec cargo bench --bench engine_bench
