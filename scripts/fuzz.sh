#!/usr/bin/env bash
# Long runs of the parsers' property tests: exai-core's `wire::fuzz` (wire bytes, SSE events cut
# anywhere, the relay's splice, the scanners) and config file parser; exai-mcp's `frames::fuzz`
# (one MCP frame: message, answer or nothing); exai-stdio's `lines::fuzz` (the stdio line
# transport, input in any pieces, reads cancelled anywhere); exai-ws's `ws::frame::fuzz` (the
# EXAI protocol's frame decoder). `cargo test` runs the same properties briefly (256 cases each);
# this runs CASES of each (default 200,000) in release. A failure is saved by proptest under the
# crate's proptest-regressions/ (e.g. exai-stdio/proptest-regressions/lines/fuzz.txt) and
# replayed first by every later run: commit that file with the fix.
#
#   bash scripts/fuzz.sh            # 200,000 cases per property
#   bash scripts/fuzz.sh 2000000    # longer
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-200000}"
echo "fuzzing with ${PROPTEST_CASES} cases per property…" >&2
cargo test --release -p exai-core --features testing --lib -- wire::fuzz config::tests::arbitrary_config_files_never_panic
cargo test --release -p exai-mcp --lib -- frames::fuzz
cargo test --release -p exai-stdio --lib -- lines::fuzz
cargo test --release -p exai-ws --lib -- ws::frame::fuzz
