"""A writable view of an image's root filesystem without a container: overlay over its layers
with a fresh upper dir, which then holds exactly the step's changes (in layer form)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.engine.layers import OPAQUE_XATTR
from dockyard.engine.mounts import mount_overlay, unmount
from dockyard.engine.store import Store


@dataclass(frozen=True, slots=True)
class Mounted:
    rootfs: Path
    upper: Path


@contextlib.contextmanager
def mounted(store: Store, diff_ids: list[str]) -> Iterator[Mounted]:
    """The image with layers `diff_ids` mounted read-write; its changes land in `upper`."""
    with store.scratch_dir("build-") as work:
        upper = work / "diff"
        upper.mkdir(mode=0o755)
        if not diff_ids:
            yield Mounted(upper, upper)
            return
        (work / "work").mkdir()
        target = work / "rootfs"
        target.mkdir()
        lowers = [store.layer_diff(d) for d in reversed(diff_ids)]
        mount_overlay(lowers, upper, work / "work", target, links_dir=store.root / "l")
        try:
            yield Mounted(target, upper)
        finally:
            unmount(target)


def has_changes(upper: Path) -> bool:
    with os.scandir(upper) as it:
        return any(True for _ in it)


def discard_volume_writes(upper: Path, volumes: list[str], in_image: Callable[[str], bool]) -> None:
    """Drop what a RUN wrote below declared VOLUMEs, as the classic builder does (there they
    land in an anonymous volume, not the layer); a volume's missing mount point is created."""
    for volume in volumes:
        rel = posixpath.normpath("/" + volume).lstrip("/")
        if not rel:
            continue
        parent = upper
        parts = rel.split("/")
        for part in parts[:-1]:
            parent = parent / part
            if not parent.is_dir() or parent.is_symlink():
                break
        else:
            target = parent / parts[-1]
            if target.is_dir() and not target.is_symlink():
                for child in os.scandir(target):
                    if child.is_dir(follow_symlinks=False):
                        shutil.rmtree(child.path)
                    else:
                        os.unlink(child.path)
                with contextlib.suppress(OSError):
                    os.removexattr(target, OPAQUE_XATTR)
            elif os.path.lexists(target):
                os.unlink(target)
        if not in_image(rel):
            path = upper
            for part in parts:
                path = path / part
                if not os.path.lexists(path):
                    os.mkdir(path, 0o755)
                    os.chmod(path, 0o755)
