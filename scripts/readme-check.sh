#!/usr/bin/env bash
# Replays README's path as a newcomer takes it, so a step that breaks fails the build: the
# quickstart line of "Set-up: two commands" (with an empty HOME, which it must leave untouched),
# then "Try everything offline" — the first terminal's block in the background (the mock
# upstream), its export lines applied, and the second terminal's block run exactly as written.
# Part of the test command (scripts/test.sh), after the tests built the binaries; also runnable
# alone from the checkout's root.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/exai-readme-check.XXXXXX")"
# A newcomer's HOME, empty; the Rust toolchain stays where it is.
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export HOME="$scratch/home" TMPDIR="$scratch/tmp"
mkdir -p "$HOME" "$TMPDIR"
# Each terminal runs in a process group of its own (setsid), stopped whole at the end — the
# mock and the daemon included, even when a step failed half-way.
groups=()
cleanup() {
    for group in "${groups[@]}"; do kill -- "-$group" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

# The Nth ```sh block (1-based) of the README section whose heading is $1.
block() {
    python3 - "$1" "$2" <<'PY'
import re, sys
heading, n = sys.argv[1], int(sys.argv[2])
text = open("README.md").read()
section = text[text.index(heading + "\n"):]
section = section[: (re.search(r"\n## ", section[3:]) or re.search(r"$", section)).start() + 3]
blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
print(blocks[n - 1], end="")
PY
}

step() { printf '\n== readme-check: %s ==\n' "$1" >&2; }

step "the quickstart (Set-up: two commands)"
quickstart="$(block '## Set-up: two commands' 1 | grep '^cargo run')"
(cd "$root" && bash -c "$quickstart" >"$scratch/quickstart.out")
grep -q "scratch\|state" "$scratch/quickstart.out" || { cat "$scratch/quickstart.out" >&2; exit 1; }
if [ -e "$HOME/.local/state/exai" ]; then
    echo "readme-check: the offline quickstart wrote to HOME's state directory" >&2
    exit 1
fi

for port in 8089 8079; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "readme-check: port $port is taken; the README's tour needs it free" >&2
        exit 1
    fi
done

step "terminal 1 (Try everything offline): the mock upstream"
block '## Try everything offline' 1 >"$scratch/terminal1.sh"
setsid bash "$scratch/terminal1.sh" >"$scratch/mock.out" 2>&1 &
groups+=($!)
for _ in $(seq 1 100); do
    grep -q '^export EXAI_STATE_DIR' "$scratch/mock.out" 2>/dev/null && break
    sleep 0.1
done
grep '^export ' "$scratch/mock.out" >"$scratch/mock.env" || { cat "$scratch/mock.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$scratch/mock.env"

step "terminal 2 (Try everything offline), as written"
block '## Try everything offline' 2 >"$scratch/terminal2.sh"
setsid bash -euo pipefail "$scratch/terminal2.sh" >"$scratch/terminal2.out" 2>&1 &
groups+=($!)
wait "$!" || { cat "$scratch/terminal2.out" >&2; echo "readme-check: the second terminal's block failed" >&2; exit 1; }
cat "$scratch/terminal2.out"
grep -q 'echo' "$scratch/terminal2.out" || { echo "readme-check: no echo from the mock" >&2; exit 1; }
if [ -e "$HOME/.local/state/exai" ]; then
    echo "readme-check: the offline tour wrote to HOME's state directory" >&2
    exit 1
fi
step "README's path works as written"
