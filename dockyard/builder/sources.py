"""Where COPY and ADD read from: the build context (in place) or another image's root.

`SourceTree.resolve` turns one source argument (a path or a Go-style wildcard) into the
files it names; `SourceTree.walk` lists a directory below one of them. In the build context,
a path climbing out with `..`, or a named symlink resolving outside the context, is refused,
and what `.dockerignore` excludes is invisible. In an image's root, symlinks resolve inside
that root as they would in a chroot.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.builder.dockerignore import Matcher
from dockyard.builder.errors import BuildError
from dockyard.engine.fsutil import secure_join

_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # absolute host path
    rel: str  # relative to the source argument's root ("" for the root itself)
    context_rel: str  # relative to the tree's root
    st: os.stat_result


class SourceTree:
    def __init__(self, root: Path, matcher: Matcher | None = None, *, context: bool) -> None:
        self.root = Path(os.path.realpath(root))
        self.matcher = matcher or Matcher([])
        self.context = context

    def _clean(self, source: str, keyword: str) -> str:
        cleaned = posixpath.normpath(source) if source else "."
        if cleaned == ".." or cleaned.startswith("../"):
            raise BuildError(f"{keyword} failed: forbidden path outside the build context: "
                             f"{source} ()")
        return posixpath.normpath(cleaned.lstrip("/")) if cleaned != "/" else "."

    def resolve(self, source: str, keyword: str = "COPY") -> list[tuple[Path, str]]:
        """The (host path, tree-relative name) pairs one source argument names."""
        rel = self._clean(source, keyword)
        if _WILDCARD.search(rel):
            found = [(self._locate(name, source, keyword), name) for name in self._glob(rel)]
            if not found:
                raise BuildError(f"{keyword} failed: no source files were specified")
            return found
        if rel != "." and self.matcher.excluded(rel):
            raise self._missing(source, keyword)
        return [(self._locate(rel, source, keyword), rel)]

    def _missing(self, source: str, keyword: str) -> BuildError:
        where = "build context or excluded by .dockerignore" if self.context else "source image"
        return BuildError(
            f"{keyword} failed: file not found in {where}: stat {source}: file does not exist"
        )

    def _locate(self, rel: str, source: str, keyword: str) -> Path:
        if not self.context:
            target = secure_join(self.root, rel)
            if not os.path.lexists(target):
                raise self._missing(source, keyword)
            return target
        candidate = self.root / rel if rel != "." else self.root
        if not os.path.lexists(candidate):
            raise self._missing(source, keyword)
        real = os.path.realpath(candidate)
        root = os.fspath(self.root)
        if real != root and not real.startswith(root + "/"):
            raise BuildError(
                f"{keyword} failed: forbidden path outside the build context: {source} "
                f"(a symlink resolving to {real})"
            )
        if not os.path.exists(real):
            raise self._missing(source, keyword)
        return Path(real)

    def _glob(self, pattern: str) -> list[str]:
        parts = pattern.split("/")
        matches = [""]
        for part in parts:
            following = []
            for base in matches:
                directory = self.root / base if base else self.root
                if not _WILDCARD.search(part):
                    name = f"{base}/{part}" if base else part
                    if os.path.lexists(directory / part):
                        following.append(name)
                    continue
                translated = part.replace("[^", "[!")
                try:
                    names = sorted(os.listdir(directory))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                for entry in names:
                    if fnmatch.fnmatchcase(entry, translated):
                        following.append(f"{base}/{entry}" if base else entry)
            matches = following
        return [m for m in matches if not self.matcher.excluded(m)]

    def walk(self, top: Path, top_rel: str) -> Iterator[Entry]:
        """`top` and, if a directory, everything below it (not following symlinks)."""
        st = os.lstat(top)
        yield Entry(os.fspath(top), "", top_rel, st)
        if stat.S_ISDIR(st.st_mode):
            yield from self._walk_dir(os.fspath(top), "", top_rel)

    def _walk_dir(self, directory: str, rel: str, context_rel: str) -> Iterator[Entry]:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            nested = context_rel not in ("", ".")
            child_ctx = f"{context_rel}/{entry.name}" if nested else entry.name
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.matcher and self.matcher.excluded(child_ctx):
                if is_dir and self.matcher.may_reinclude_under(child_ctx):
                    yield from self._walk_dir(entry.path, child_rel, child_ctx)
                continue
            yield Entry(entry.path, child_rel, child_ctx, st)
            if is_dir:
                yield from self._walk_dir(entry.path, child_rel, child_ctx)
