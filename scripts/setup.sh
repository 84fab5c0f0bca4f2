#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing exai: redis-server and redis-cli
# (the tests start real servers, a real Redis Cluster and a TLS server), openssl (the TLS test
# makes its own certificates), Python 3 and, in the project's clients directory (target/clients),
# the official Anthropic and OpenAI SDKs (clients nobody on the team wrote, driven against
# /v1/messages and /v1/responses), Codex CLI and Claude Code (npm); Chromium (the status page is
# tested in a real headless browser), `script` from util-linux (a real terminal for `exai chat`'s
# spinner) and the rustfmt/clippy components. Safe to run again; does nothing when everything is
# present.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The packaged service is not needed (tests start their own servers on free ports).
for tool in redis-server redis-cli openssl chromium script; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is still missing" >&2; exit 1; }
done

# The clients the tests drive go into a project-local directory, never the system's:
# EXAI_CLIENTS_DIR (default target/clients): python/ for PyPI packages, node/ for npm ones.
clients="${EXAI_CLIENTS_DIR:-$(pwd)/target/clients}"
mkdir -p "$clients/python" "$clients/node"

# The official Anthropic and OpenAI SDKs (PyPI), with `pip install --target`.
if ! PYTHONPATH="$clients/python" python3 -c "import anthropic, openai" >/dev/null 2>&1; then
    echo "setup: installing the anthropic and openai Python SDKs into $clients/python" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$clients/python" anthropic openai \
        2>&1 | grep -v -e "dependency resolver" -e "requires pydantic" -e "as the 'root' user" >&2 || true
fi
PYTHONPATH="$clients/python" python3 -c "import anthropic, openai" \
    || { echo "setup: the anthropic or openai Python SDK is still missing" >&2; exit 1; }

# Codex CLI (npm), pinned: the version whose Responses requests the tests replay.
codex_version=0.169.0
if ! "$clients/node/node_modules/.bin/codex" --version 2>/dev/null | grep -q "$codex_version"; then
    echo "setup: installing Codex CLI $codex_version into $clients/node" >&2
    npm install --silent --no-audit --no-fund --prefix "$clients/node" "@openai/codex@$codex_version" >/dev/null
fi
"$clients/node/node_modules/.bin/codex" --version >/dev/null \
    || { echo "setup: Codex CLI is still missing" >&2; exit 1; }

# Claude Code itself (npm), also project-local: its native binary runs offline against a local
# ANTHROPIC_BASE_URL.
if ! "$clients/node/node_modules/.bin/claude" --version >/dev/null 2>&1; then
    echo "setup: installing Claude Code into $clients/node" >&2
    npm install --silent --no-audit --no-fund --prefix "$clients/node" @anthropic-ai/claude-code >/dev/null
fi
"$clients/node/node_modules/.bin/claude" --version >/dev/null \
    || { echo "setup: Claude Code (claude) is still missing" >&2; exit 1; }

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "setup: adding rust component $component" >&2
        rustup component add "$component"
    fi
done
