#!/usr/bin/env bash
# Installs everything FLOW needs on a fresh machine, and nothing twice:
#   .state/uv               uv, the installer (pinned)
#   .venv                   the app and its test tools, from the hash-pinned requirements-dev.lock
#   .state/localstack-venv  LocalStack 4.4.0, from tools/localstack.lock (its pins clash with the app's)
#   PostgreSQL server binaries, from the OS packages when run as root and none are installed
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.state
UV_VERSION=0.13.8
PYTHON=${FLOW_PYTHON:-python3.11}

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "Python 3.11 is needed ($PYTHON not found); set FLOW_PYTHON to a python3.11"
mkdir -p "$STATE"

# A stamp per environment: rebuilt only when what it is made from changes.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

if [ ! -x "$STATE/uv/bin/uv" ] || ! "$STATE/uv/bin/uv" --version | grep -q " $UV_VERSION"; then
  say "installing uv $UV_VERSION"
  rm -rf "$STATE/uv"
  "$PYTHON" -m venv "$STATE/uv"
  "$STATE/uv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
UV="$STATE/uv/bin/uv"
export UV_PYTHON_DOWNLOADS=never

app_sum=$(cat requirements-dev.lock services/*/pyproject.toml | sha256sum | cut -c1-16)
if ! stamp_ok .venv/.flow-stamp "$app_sum"; then
  say "installing the app into .venv"
  "$UV" venv --quiet --allow-existing --python "$PYTHON" .venv
  "$UV" pip sync --quiet --python .venv/bin/python --require-hashes requirements-dev.lock
  "$UV" pip install --quiet --python .venv/bin/python --no-deps \
    -e services/rules -e services/kit -e services/ingest -e services/engine -e services/query
  echo "$app_sum" > .venv/.flow-stamp
fi

ls_sum=$(sha256sum tools/localstack.lock | cut -c1-16)
if ! stamp_ok "$STATE/localstack-venv/.flow-stamp" "$ls_sum"; then
  say "installing LocalStack into .state/localstack-venv"
  "$UV" venv --quiet --allow-existing --python "$PYTHON" "$STATE/localstack-venv"
  "$UV" pip sync --quiet --python "$STATE/localstack-venv/bin/python" --require-hashes tools/localstack.lock
  echo "$ls_sum" > "$STATE/localstack-venv/.flow-stamp"
fi

# PostgreSQL: only the server binaries are needed; FLOW runs its own cluster.
if [ -z "${FLOW_DEV_DATABASE_URL:-}" ] && ! .venv/bin/python -c 'import sys; sys.path.insert(0, "."); from tools.devstack.postgres import find_bindir; sys.exit(find_bindir() is None)'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing the PostgreSQL server from the OS packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    die "PostgreSQL server binaries are missing: install them (Debian/Ubuntu: sudo apt-get install postgresql), or set FLOW_PG_BINDIR, or FLOW_DEV_DATABASE_URL to an existing server"
  fi
fi
# pg_partman manages the monthly partitions of flow.transaction where it is installed (the schema
# falls back to native partitions without it): add it when we can, never fail for it.
if [ -z "${FLOW_DEV_DATABASE_URL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  pg_version=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "."); from tools.devstack.postgres import find_bindir; print(find_bindir().parent.name)')
  if [ ! -f "/usr/share/postgresql/$pg_version/extension/pg_partman.control" ]; then
    say "installing pg_partman for PostgreSQL $pg_version"
    (apt-get install -y -qq "postgresql-$pg_version-partman" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq "postgresql-$pg_version-partman" >/dev/null 2>&1; }) ||
      say "pg_partman not available; native partitions will be used"
  fi
fi
say "ready"
