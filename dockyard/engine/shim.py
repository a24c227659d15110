"""`python -m dockyard.engine.shim ROOT CONTAINER_ID`: the detached monitor of one container."""

from __future__ import annotations

import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from dockyard.engine.containers import Containers
    from dockyard.engine.runner import monitor
    from dockyard.engine.store import Store

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    store = Store(Path(argv[0]))
    container = Containers(store).get(argv[1])
    try:
        return monitor(store, container)
    except Exception as exc:
        print(f"dockyard shim: {exc}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
