"""A build worker's work dir: its checkouts and its own image store, held with a lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from dockyard.engine.containers import Containers
from dockyard.engine.runner import remove
from dockyard.engine.store import Store

log = logging.getLogger("dockyard.builds")


class WorkDirBusy(Exception):
    """Another worker process holds this work dir."""


def claim_work_dir(path: Path) -> int:
    """Hold an exclusive lock on PATH for the life of the process (the fd is the lock), so a
    worker's image store and containers are its own: whatever is left in it is a dead
    worker's, safe to remove, and its build cache outlives restarts."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkDirBusy(f"another build worker is using {path}") from None
    return fd


def claim_free_work_dir(base: Path) -> tuple[Path, int]:
    """The first of BASE/worker-0, worker-1, … that no other process holds."""
    number = 0
    while True:
        path = base / f"worker-{number}"
        with contextlib.suppress(WorkDirBusy):
            return path, claim_work_dir(path)
        number += 1


def remove_containers(root: Path) -> None:
    """Remove every container of the image store at ROOT, running or not."""
    store = Store(root)
    for container in Containers(store).all():
        try:
            remove(store, container, force=True)
        except Exception:
            log.exception("could not remove container %s from %s", container.id, root)
