#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, .venv) and run the whole suite.
# Arguments go to pytest, e.g. `-m slow` or `-m "not slow"` or `tests/api`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-test-deps.sh"
EXTRAS=test,granian source "$root/scripts/venv.sh"
cd "$root"
ruff check dockyard tests bench
exec python -m pytest -ra "$@"
