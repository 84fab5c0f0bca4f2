#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing exai: redis-server (the memory
# tests start real ones) and the rustfmt/clippy components. Safe to run again; does nothing when
# everything is present.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
    echo "setup: installing redis-server" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# The packaged service is not needed (tests start their own servers on free ports).
command -v redis-server >/dev/null || { echo "setup: redis-server is still missing" >&2; exit 1; }

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "setup: adding rust component $component" >&2
        rustup component add "$component"
    fi
done
