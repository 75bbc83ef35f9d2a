#!/usr/bin/env bash
# A tour of the geventipc command line (docs/cli.md): a throw-away server that prints what
# it gets, events sent from the shell, a server's self-description, and what the exit
# status says when something is wrong. Exits by itself.
#
#     bash examples/cli_tour.sh        (uses .venv/bin/geventipc when there is one)
set -euo pipefail
cd "$(dirname "$0")/.."
GEVENTIPC=${GEVENTIPC:-$( [ -x .venv/bin/geventipc ] && echo .venv/bin/geventipc || echo geventipc )}
ROOT=$(mktemp -d /tmp/geventipc-tour-XXXXXX)      # a private socket directory
trap 'kill "$SERVER" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$ROOT"' EXIT
ipc() { "$GEVENTIPC" "$@" --socket-root "$ROOT"; }

echo "== a server named 'tour' that prints every event (JSON lines: stdout is a pipe) and"
echo "   answers requests with the functions of examples/cli_handlers.py"
"$GEVENTIPC" serve tour --handlers examples/cli_handlers.py --socket-root "$ROOT" \
    > >(while read -r line; do echo "   server got: $line"; done) &
SERVER=$!
for _ in $(seq 50); do [ -S "$ROOT/app.tour" ] && break; sleep 0.1; done

echo "== emit: DATA is JSON; --text sends a plain string; - sends one event per stdin line"
ipc emit tour greeting '{"from": "the shell", "n": [1, 2, 3]}' --id shell
ipc emit tour note --text 'no quotes needed' --id shell
printf '1\n2\n3\n' | ipc emit tour count - --id shell --silent

echo "== request: the reply is printed (add is a function of examples/cli_handlers.py)"
ipc request tour add '[1, 2]'

echo "== describe: the server's define tables (examples/cli_handlers.py's setup fills them)"
ipc describe tour

echo "== mistakes are one line on stderr, and the exit status says which kind"
ipc request tour square '"x"' || echo "   exit $? (1: remote error - square raised on the server)"
ipc emit tour greeting 'not json' || echo "   exit $? (2: usage)"
ipc emit nobody greeting --timeout 0.5 || echo "   exit $? (1: no server)"
sleep 0.3
