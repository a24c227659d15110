#!/usr/bin/env bash
# Source this: makes .venv (Python 3.11+) with Dockyard installed, reinstalling only when
# pyproject.toml changed. EXTRAS selects optional dependency groups, e.g. EXTRAS=test.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
extras=${EXTRAS:-}

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$(command -v "$candidate"); break
  fi
done
if [[ -z "$python" ]]; then
  echo "dockyard: installing python3 (3.11+ is needed)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv
  python=$(command -v python3)
fi
if [[ ! -x "$venv/bin/python" ]]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    echo "dockyard: installing python3-venv" >&2
    rm -rf "$venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    "$python" -m venv "$venv"
  fi
fi
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)-${extras:-base}"
if [[ ! -e "$stamp" ]]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  spec="$root"
  [[ -n "$extras" ]] && spec="$root[$extras]"
  "$venv/bin/python" -m pip install -q -e "$spec"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
