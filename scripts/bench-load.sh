#!/usr/bin/env bash
# The exai-ws load harness (benches/load.rs): installs nginx (the proxy it is compared with) when
# the machine lacks it, builds the release daemon, and prints the tables README's Performance
# section quotes. Takes about a minute; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx-light (for the proxy_pass comparison)…" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null
fi
export PATH="$PATH:/usr/sbin"

cargo build --release -p exai-ws
cargo bench -p exai-benches --bench load
