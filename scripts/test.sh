#!/usr/bin/env bash
# Sets up .venv (CPU PyTorch, every extra, the dev tools, Debian's Chromium and PostgreSQL server) and runs lint,
# types and tests.
# This is the README's test command and what .ci/run calls. Safe to run again: installs are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-venv.sh dev

# A real browser for the dashboard tests: Debian's chromium (Playwright's own download cannot work offline).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: chromium not found and cannot be installed here; browser tests will fail" >&2
  fi
fi

# A real PostgreSQL server for the PostgreSQL store's tests (tests/pg.py starts a throwaway one): Debian's package.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "warning: PostgreSQL's initdb not found and cannot be installed here; PostgreSQL tests will fail" >&2
  fi
fi

echo "== ruff"
.venv/bin/ruff check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
