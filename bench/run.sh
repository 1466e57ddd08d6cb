#!/usr/bin/env bash
# Benchmark: builds the release binary, then runs benches/mcp_bench.rs against it and prints one
# name=value line per figure (startup, idle memory, ping latency, throughput, CPU and memory per
# call, memory after 10,000 sessions). Takes about 35 s after the builds. Loopback only.
#
#   bench/run.sh            # BIN=path/to/whatsapp-mcp-stream to measure another binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${BIN:-}" ]; then
  cargo build --release
  BIN=$TARGET_DIR/release/whatsapp-mcp-stream
fi
export BIN
exec cargo bench --bench mcp_bench
