#!/usr/bin/env bash
# Set up Dockyard in .venv and run the server on the embedded default (SQLite + filesystem).
# Any arguments go to `dockyard serve`, e.g. --addr 0.0.0.0:5000 --data-dir /srv/dockyard.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
EXTRAS=granian source "$root/scripts/venv.sh"
exec dockyard serve "$@"
