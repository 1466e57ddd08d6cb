#!/usr/bin/env bash
# Messaging benchmark against fakewa and its peers (real whatsapp-rust clients inside fakewa):
# builds fakewa (debug) and a release binary with the test-network feature in its own target
# dir (only that build accepts WA_WS_URL / WA_TEST_CA), then runs benches/messaging_bench.rs,
# which prints name=value lines: send_p50_ms… (send_message → the peer's inbox),
# inbound_p50_ms… (a peer's send → wait_for_messages answers), history_ingest_msgs_per_s and
# history_ingest_peak_rss_kb (a 100,000-message history sync). A few minutes after the builds.
#
#   bench/run_messaging.sh     # SENDS=50 INBOUND=20 HISTORY_MESSAGES=10000 for a quick try;
#                              # LOG_FILE=/tmp/p.log RUST_LOG=info keeps the product's log
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -p fakewa
CARGO_TARGET_DIR=$PWD/target/bench-net cargo build --release --features test-network
export FAKEWA=${FAKEWA:-$TARGET_DIR/debug/fakewa}
export NET_BIN=${NET_BIN:-$PWD/target/bench-net/release/whatsapp-mcp-stream}
# The bench in the same target dir and features, so it reuses that build's library.
CARGO_TARGET_DIR=$PWD/target/bench-net exec cargo bench --features test-network --bench messaging_bench
