#!/usr/bin/env bash
# Installs ruff and mypy (tests/test_lint.py checks services/ with them) into .state/lint-venv, again only when
# a lock changes: the app's dependencies from requirements.lock (mypy checks against exactly those; the services
# themselves it reads from services/) and the tools and stubs from tools/lint-tools.lock, both hash-pinned.
# Needs .state/uv (tools/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.state/lint-venv
UV=.state/uv/bin/uv
export UV_PYTHON_DOWNLOADS=never
[ -x "$UV" ] || { echo "lint-tools: $UV is missing: run 'make setup' first" >&2; exit 1; }
sum=$(cat requirements.lock tools/lint-tools.lock | sha256sum | cut -c1-16)
[ -f "$VENV/.flow-stamp" ] && [ "$(cat "$VENV/.flow-stamp")" = "$sum" ] && exit 0
echo "lint-tools: installing ruff, mypy and the app's dependencies into $VENV"
"$UV" venv --quiet --allow-existing --python "${FLOW_PYTHON:-python3.11}" "$VENV"
"$UV" pip sync --quiet --python "$VENV/bin/python" --require-hashes requirements.lock tools/lint-tools.lock
"$VENV/bin/ruff" --version >/dev/null
"$VENV/bin/mypy" --version >/dev/null
echo "$sum" > "$VENV/.flow-stamp"
