#!/usr/bin/env bash
# The exai-ws load harness (benches/load.rs): installs wrk (the load generator) and nginx (the
# upstream, and the proxy it is compared with) when the machine lacks them, builds the release
# daemon, and prints the tables README's Performance section quotes. Takes about five minutes
# (EXAI_LOAD_SECS=8); run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (load generator, upstream and proxy)…" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
# 2,000 long streams need ~6,000 descriptors across the processes.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -p exai-ws
cargo bench -p exai-benches --bench load
