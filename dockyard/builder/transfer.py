"""COPY and ADD: which sources an instruction names, their checksum, and writing them.

`Transfer.collect` turns the source words into items (a context path, a path in another
stage or image, a heredoc, a downloaded URL, a local archive for ADD to unpack); `summary`
is the `file:<sha>` / `dir:<sha>` / `multi:<sha>` text Docker puts in history and in the cache
key; `write` puts every item under the destination of a mounted root. Sources from the context
are owned by root unless `--chown`; those from another stage or an archive keep their owners,
as the classic builder does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.builder.copier import (
    ROOT,
    Identity,
    Writer,
    copy_entries,
    ensure_dir,
    is_dir_in_root,
    parse_chmod,
    resolve_chown,
)
from dockyard.builder.errors import BuildError
from dockyard.builder.parser import Heredoc
from dockyard.builder.rootfs import mounted
from dockyard.builder.shell import expand
from dockyard.builder.sources import Entry, SourceTree
from dockyard.builder.stage import Stage
from dockyard.engine.layers import LayerError, Limits, apply_layer

if TYPE_CHECKING:
    from dockyard.builder.build import Builder

_URL = re.compile(r"^https?://", re.I)
_HEREDOC_WORD = re.compile(r"^<<-?[\"']?([^\"']+)[\"']?$")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


@dataclass(slots=True)
class Item:
    """One source: its entries (the root entry first), the name it takes in a directory."""

    name: str
    entries: list[Entry]
    checksum: str
    owner: Identity | None  # None: keep the source's owners
    archive: bool = False

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.entries[0].st.st_mode)


def is_archive(path: str) -> bool:
    """A tar, optionally gzip/bzip2/xz/zstd compressed: what ADD unpacks."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


class Transfer:
    def __init__(
        self, builder: Builder, stage: Stage, keyword: str, flags: dict[str, str],
        env: dict[str, str],
    ) -> None:
        self.builder = builder
        self.stage = stage
        self.keyword = keyword
        self.flags = flags
        self.env = env
        self.add = keyword == "ADD"
        if "checksum" in flags and not flags["checksum"].startswith("sha256:"):
            raise BuildError(f"invalid --checksum {flags['checksum']!r}: use sha256:<hex>")
        self.chmod = parse_chmod(flags["chmod"]) if flags.get("chmod") else None
        self.from_image = "scratch"

    # --- sources ------------------------------------------------------------------------------

    def collect(
        self, sources: list[str], heredocs: list[Heredoc], stack: contextlib.ExitStack
    ) -> list[Item]:
        by_name = {h.name: h for h in heredocs}
        items: list[Item] = []
        tree: SourceTree | None = None
        from_ref = self.flags.get("from")
        for source in sources:
            marker = _HEREDOC_WORD.match(source)
            if marker and marker.group(1) in by_name:
                items.append(self._heredoc(by_name[marker.group(1)]))
                continue
            if self.add and _URL.match(source):
                items.append(self._download(source))
                continue
            if "checksum" in self.flags:
                raise BuildError("ADD --checksum is only supported for HTTP(S) sources")
            if tree is None:
                tree = self._tree(from_ref, stack) if from_ref else self.builder.context_tree(
                    self.keyword
                )
            items.extend(self._from_tree(tree, source, from_ref))
        return items

    def _tree(self, ref: str, stack: contextlib.ExitStack) -> SourceTree:
        """The root of stage or image `ref`, mounted read-only for this instruction."""
        expanded = expand(ref, self.env, self.builder.escape)
        source = self.builder.stage_by_ref(expanded)
        if source is self.stage:
            raise BuildError(f"{self.keyword} --from={ref}: a stage cannot copy from itself")
        if source is not None:
            image_id, diff_ids = source.image_id, source.diff_ids
        else:
            image_id = self.builder.base_image(expanded)
            diff_ids = self.builder.store.image_config(image_id).diff_ids
        self.from_image = image_id or "scratch"
        view = stack.enter_context(mounted(self.builder.store, diff_ids))
        return SourceTree(view.rootfs, context=False)

    def _from_tree(self, tree: SourceTree, source: str, from_ref: str | None) -> list[Item]:
        items = []
        for host_path, rel in tree.resolve(source, self.keyword):
            entries = list(tree.walk(host_path, rel))
            name = posixpath.basename(rel) or posixpath.basename(os.fspath(host_path))
            if from_ref:
                # Another stage's content is fixed by its image ID: no need to read it.
                checksum = _digest("from", self.from_image, rel)
                items.append(Item(name, entries, checksum, owner=None))
                continue
            content = self.builder.entries_checksum(entries)
            root = entries[0]
            unpack = self.add and stat.S_ISREG(root.st.st_mode) and is_archive(root.path)
            kind = "archive" if unpack else "dir" if stat.S_ISDIR(root.st.st_mode) else "file"
            items.append(
                Item(name, entries, _digest(kind, name, content), owner=ROOT, archive=unpack)
            )
        return items

    def _heredoc(self, heredoc: Heredoc) -> Item:
        content = heredoc.content
        if heredoc.expand:
            content = _VARIABLE.sub(
                lambda m: expand(m.group(0), self.env, self.builder.escape), content
            )
        path = self.builder.scratch_dir("heredoc") / "content"
        path.write_text(content, encoding="utf-8", errors="surrogateescape")
        path.chmod(0o644)
        entry = Entry(os.fspath(path), "", heredoc.name, os.lstat(path))
        checksum = _digest("heredoc", heredoc.name, hashlib.sha256(path.read_bytes()).hexdigest())
        return Item(heredoc.name, [entry], checksum, owner=ROOT)

    def _download(self, url: str) -> Item:
        if self.builder.fetch is None:
            raise BuildError(f"ADD {url}: this build cannot download (no HTTP client)")
        directory = self.builder.scratch_dir("download")
        download = self.builder.fetch(url, directory)
        digest = hashlib.sha256()
        with open(download.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        wanted = self.flags.get("checksum")
        if wanted and wanted != f"sha256:{digest.hexdigest()}":
            raise BuildError(
                f"ADD {url}: checksum mismatch: the download is sha256:{digest.hexdigest()}, "
                f"--checksum says {wanted}"
            )
        os.chmod(download.path, 0o600)
        if download.mtime is not None:
            os.utime(download.path, (download.mtime, download.mtime))
        entry = Entry(os.fspath(download.path), "", download.filename, os.lstat(download.path))
        checksum = _digest("url", download.filename, digest.hexdigest())
        return Item(download.filename, [entry], checksum, owner=ROOT)

    def summary(self, items: list[Item]) -> str:
        if len(items) == 1:
            item = items[0]
            return f"{'dir' if item.is_dir else 'file'}:{item.checksum}"
        return f"multi:{_digest(*(item.checksum for item in items))}"

    # --- writing ------------------------------------------------------------------------------

    def write(self, items: list[Item], rootfs: Path, dest: str, dest_is_dir: bool) -> None:
        chown = resolve_chown(rootfs, self.flags["chown"]) if self.flags.get("chown") else None
        into_dir = dest_is_dir or is_dir_in_root(rootfs, dest)
        for item in items:
            owner = chown or item.owner
            if item.archive:
                self._unpack(item, rootfs, dest, chown)
            elif item.is_dir:
                base = ensure_dir(rootfs, dest, owner or ROOT)
                copy_entries(item.entries, Writer(base, owner, self.chmod), skip_root=True)
            elif into_dir:
                base = ensure_dir(rootfs, dest, owner or ROOT)
                Writer(base, owner, self.chmod).put(item.entries[0], f"{base}/{item.name}")
            else:
                parent, name = posixpath.split(dest.rstrip("/"))
                base = ensure_dir(rootfs, parent or "/", owner or ROOT)
                Writer(base, owner, self.chmod).put(item.entries[0], f"{base}/{name}")

    def _unpack(self, item: Item, rootfs: Path, dest: str, chown: Identity | None) -> None:
        """ADD of a local archive: unpack it safely aside, then copy it under `dest`."""
        unpacked = self.builder.scratch_dir("unpack")
        try:
            with open(item.entries[0].path, "rb") as handle:
                apply_layer(handle, unpacked, Limits.from_env())
        except LayerError as exc:
            raise BuildError(f"ADD {item.name}: {exc}") from exc
        base = ensure_dir(rootfs, dest, chown or ROOT)
        entries = SourceTree(unpacked, context=False).walk(unpacked, "")
        copy_entries(entries, Writer(base, chown, self.chmod), skip_root=True)
