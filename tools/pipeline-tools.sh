#!/usr/bin/env bash
# Installs actionlint (tests/test_pipeline.py checks .github/workflows with it) into .state/pipeline-venv
# from the hash-pinned tools/pipeline-tools.lock, again only when the lock changes. Needs .state/uv
# (tools/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.state/pipeline-venv
UV=.state/uv/bin/uv
export UV_PYTHON_DOWNLOADS=never
[ -x "$UV" ] || { echo "pipeline-tools: $UV is missing: run 'make setup' first" >&2; exit 1; }
sum=$(sha256sum tools/pipeline-tools.lock | cut -c1-16)
[ -f "$VENV/.flow-stamp" ] && [ "$(cat "$VENV/.flow-stamp")" = "$sum" ] && exit 0
echo "pipeline-tools: installing actionlint into $VENV"
"$UV" venv --quiet --allow-existing --python "${FLOW_PYTHON:-python3.11}" "$VENV"
"$UV" pip sync --quiet --python "$VENV/bin/python" --require-hashes tools/pipeline-tools.lock
"$VENV/bin/actionlint" --version >/dev/null
echo "$sum" > "$VENV/.flow-stamp"
