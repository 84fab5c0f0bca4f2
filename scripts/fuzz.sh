#!/usr/bin/env bash
# Long runs of the parsers' property tests (exai-core's `wire::fuzz` — wire bytes, SSE events cut
# anywhere, the relay's splice, the scanners — and the config file parser). `cargo test` runs the
# same properties briefly (256 cases each); this runs CASES of each (default 200,000) in release.
# A failure is saved by proptest under exai-core/proptest-regressions/ and replayed first by
# every later run: commit that file with the fix.
#
#   bash scripts/fuzz.sh            # 200,000 cases per property
#   bash scripts/fuzz.sh 2000000    # longer
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-200000}"
echo "fuzzing with ${PROPTEST_CASES} cases per property…" >&2
cargo test --release -p exai-core --features testing --lib -- wire::fuzz config::tests::arbitrary_config_files_never_panic
