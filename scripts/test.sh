#!/usr/bin/env bash
# The test command (README, and what CI runs): set-up, formatting, lints, then every test of the
# workspace — unit tests, integration tests against the fake upstream and real redis-servers,
# examples and benches compiled.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
