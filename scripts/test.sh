#!/usr/bin/env bash
# The test command (README, and what CI runs): set-up, formatting, lints, then every test of the
# workspace — unit tests, integration tests against the fake upstream and real redis-servers,
# examples and benches compiled — and README's quickstart and offline tour replayed as written.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n== %s ==\n' "$1" >&2; }

stage "set-up (scripts/setup.sh)"
scripts/setup.sh
stage "formatting (cargo fmt --check)"
cargo fmt --all -- --check
stage "lints (cargo clippy, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
stage "tests (unit, integration, examples and benches built)"
cargo test --workspace --all-targets
stage "doc tests (README's Rust snippets included)"
cargo test --workspace --doc
stage "README's path replayed (scripts/readme-check.sh)"
scripts/readme-check.sh
stage "all passed"
