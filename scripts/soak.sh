#!/usr/bin/env bash
# The exai-ws soak (benches/soak/main.rs): builds the release daemon, then sends 10,000 calls by
# 64 clients through every front door at once (OpenAI, Anthropic, MCP over HTTP and WebSocket,
# the EXAI protocol), 10% of them with an injected upstream fault, and checks that no call is
# lost or crossed, that every answer is in its caller's protocol, that the daemon's RSS stays
# flat over the second half and that its open files come back. Prints the tables README's
# Performance section quotes; exits non-zero if a rule is broken. Takes about five minutes: two
# and a half of calls, then up to three waiting for the pooled upstream connections to close.
#
# EXAI_SOAK_CALLS (10000) and EXAI_SOAK_CLIENTS (64) shrink it for a quick try.
set -euo pipefail
cd "$(dirname "$0")/.."

# 64 clients hold about 200 connections, and the daemon as many.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -p exai-ws
cargo bench -p exai-benches --bench soak
