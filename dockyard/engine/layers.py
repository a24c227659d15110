"""Layer tarballs: apply one into a directory in overlayfs form, and write one back out.

A layer directory is what overlayfs uses as a lower (or upper) dir: deletions are 0:0 character
devices and opaque directories carry the `trusted.overlay.opaque=y` xattr. In a layer *tar*
those are `.wh.<name>` and `.wh..wh..opq` entries, as the image spec says.

Applying is hostile-input safe: every path is opened component by component relative to a
directory fd with O_NOFOLLOW, so no entry can be written through a symlink; `..`, absolute
names, hard links to outside the layer and symlinks climbing above the root are refused;
device nodes are skipped, set-id bits stripped unless allowed, and the unpacked size, the
compression ratio and the number of entries are bounded.

Writing is reproducible: entries in sorted order, numeric owners without names, whole-second
mtimes, no record padding (an empty layer is the well-known 1024 zero bytes).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CHUNK = 1 << 20
_KEPT_XATTR_PREFIXES = ("security.capability", "user.")


class LayerError(ValueError):
    """The layer tarball is malformed or breaks one of the safety rules."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 64 << 30
    max_ratio: float = 200.0
    ratio_grace_bytes: int = 32 << 20
    max_entries: int = 1_000_000
    allow_setuid: bool = True
    max_name: int = 4096

    @classmethod
    def from_env(cls, *, allow_setuid: bool = True, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"allow_setuid": allow_setuid}
        for key, name, kind in (
            ("DOCKYARD_LAYER_MAX_BYTES", "max_bytes", int),
            ("DOCKYARD_LAYER_MAX_RATIO", "max_ratio", float),
            ("DOCKYARD_LAYER_RATIO_GRACE_BYTES", "ratio_grace_bytes", int),
            ("DOCKYARD_LAYER_MAX_ENTRIES", "max_entries", int),
        ):
            if env.get(key):
                values[name] = kind(env[key])
        return cls(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class LayerResult:
    diff_id: str
    size: int
    blob_digest: str
    blob_size: int
    media_type: str
    warnings: list[str] = field(default_factory=list)


# --- reading --------------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """Counts (and optionally hashes and copies) the raw, possibly compressed, bytes."""

    def __init__(self, source: BinaryIO, prefix: bytes, copy_to: BinaryIO | None) -> None:
        self.source = source
        self.prefix = prefix
        self.count = 0
        self.hasher = hashlib.sha256()
        self.copy_to = copy_to

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        want = len(buffer)
        if self.prefix:
            data, self.prefix = self.prefix[:want], self.prefix[want:]
        else:
            data = self.source.read(want)
        n = len(data)
        buffer[:n] = data
        if n:
            self.count += n
            self.hasher.update(data)
            if self.copy_to is not None:
                self.copy_to.write(data)
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _TarStream(io.RawIOBase):
    """The uncompressed tar stream: hashed into the diff ID, measured against the limits."""

    def __init__(self, source: BinaryIO, check: Callable[[int], None]) -> None:
        self.source = source
        self.count = 0
        self.hasher = hashlib.sha256()
        self.check = check

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if n:
            self.count += n
            self.hasher.update(data)
            self.check(self.count)
        return n


def _sniff(source: BinaryIO) -> bytes:
    head = b""
    while len(head) < 6:
        more = source.read(6 - len(head))
        if not more:
            break
        head += more
    return head


def _decompressor(raw: io.RawIOBase, head: bytes) -> tuple[BinaryIO, str]:
    if head.startswith(b"\x1f\x8b"):
        from isal import igzip

        return igzip.IGzipFile(fileobj=io.BufferedReader(raw, CHUNK), mode="rb"), LAYER_TAR_GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader, LAYER_TAR_ZSTD  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        import bz2

        return bz2.BZ2File(raw), "application/x-bzip2"  # type: ignore[arg-type]
    if head.startswith(b"\xfd7zXZ\x00"):
        import lzma

        return lzma.LZMAFile(raw), "application/x-xz"  # type: ignore[arg-type]
    return io.BufferedReader(raw, CHUNK), LAYER_TAR  # type: ignore[return-value]


def apply_layer(
    source: BinaryIO,
    dest: Path,
    limits: Limits | None = None,
    *,
    copy_blob_to: BinaryIO | None = None,
) -> LayerResult:
    """Unpack the (plain, gzip, zstd, bzip2 or xz) layer tar from `source` into `dest`.

    `dest` must be an empty directory the caller owns and deletes on failure. The raw bytes are
    copied to `copy_blob_to` when given, so the layer can be kept as a blob exactly as received.
    """
    limits = limits or Limits()
    head = _sniff(source)
    raw = _CountingReader(source, head, copy_blob_to)
    stream, media_type = _decompressor(raw, head)

    def check(unpacked: int) -> None:
        if unpacked > limits.max_bytes:
            raise LayerError(f"layer unpacks to more than {limits.max_bytes} bytes (the limit)")
        if (
            media_type != LAYER_TAR
            and unpacked > limits.ratio_grace_bytes
            and unpacked > limits.max_ratio * max(raw.count, 1)
        ):
            raise LayerError(
                f"layer expands more than {limits.max_ratio:g}x when decompressed "
                "(a decompression bomb?)"
            )

    tar_stream = _TarStream(stream, check)
    extractor = _Extractor(dest, limits)
    try:
        try:
            with tarfile.open(fileobj=tar_stream, mode="r|", errorlevel=2) as archive:
                for member in archive:
                    extractor.add(archive, member)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (None, 0):
                raise
            raise LayerError(f"not a valid layer tarball: {exc}") from exc
        extractor.finish()
        while tar_stream.read(CHUNK):
            pass
        raw.drain()
    finally:
        extractor.close()
    return LayerResult(
        diff_id=f"sha256:{tar_stream.hasher.hexdigest()}",
        size=extractor.size,
        blob_digest=f"sha256:{raw.hasher.hexdigest()}",
        blob_size=raw.count,
        media_type=media_type,
        warnings=extractor.warnings,
    )


class _Extractor:
    def __init__(self, dest: Path, limits: Limits) -> None:
        self.limits = limits
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.entries = 0
        self.size = 0
        self.warnings: list[str] = []
        self.dir_times: dict[tuple[str, ...], int] = {}
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root_fd)

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _open_dir(self, parts: tuple[str, ...], name: str, *, create: bool) -> int:
        """An fd of the directory `parts` under the root, never following a symlink."""
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise LayerError(
                            f"{name!r}: its path goes through a symlink or a non-directory "
                            "(refusing to write outside the layer)"
                        ) from exc
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        self._drop_cache()
        self._cached = (parts, fd)
        return fd

    def _clear(self, parent: int, base: str, keep_dir: bool = False) -> bool:
        """Remove what is at `base`; returns True if a directory was kept in place."""
        try:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            cached = self._cached
            self._cached = None
            try:
                import shutil

                shutil.rmtree(base, dir_fd=parent)
            finally:
                self._cached = cached
            return False
        os.unlink(base, dir_fd=parent)
        return False

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LayerError(f"layer has more than {self.limits.max_entries} entries (the limit)")
        name = member.name
        if len(name) > self.limits.max_name:
            raise LayerError(f"entry name longer than {self.limits.max_name} characters")
        if name.startswith("/"):
            raise LayerError(f"{name!r}: absolute path in layer")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise LayerError(f"{name!r}: path with '..' in layer")
        if not parts:
            return
        if member.isreg() or member.islnk():
            self.size += member.size
            if self.size > self.limits.max_bytes:
                raise LayerError(f"layer holds more than {self.limits.max_bytes} bytes (the limit)")
        parent_parts, base = parts[:-1], parts[-1]
        mtime_ns = int(member.mtime) * 1_000_000_000
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent_parts, base, member, mtime_ns)
            return
        parent = self._open_dir(parent_parts, name, create=True)
        mode = member.mode & 0o7777
        if member.isdir():
            if not self._clear(parent, base, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
            try:
                self._owner_mode(fd, member, mode)
                self._xattrs(fd, member)
            finally:
                os.close(fd)
            self.dir_times[parts] = mtime_ns
            return
        if member.isreg():
            self._clear(parent, base)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(base, flags, 0o600, dir_fd=parent)
            try:
                source = archive.extractfile(member)
                if source is not None:
                    while chunk := source.read(CHUNK):
                        _write_all(fd, chunk)
                self._owner_mode(fd, member, self._strip_setid(name, mode))
                self._xattrs(fd, member)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
            return
        if member.issym():
            target = member.linkname
            if not target:
                raise LayerError(f"{name!r}: symlink with an empty target")
            if not target.startswith("/"):
                lexical = posixpath.normpath(posixpath.join(*parent_parts, target))
                if lexical == ".." or lexical.startswith("../"):
                    raise LayerError(
                        f"{name!r}: symlink to {target!r} points outside the root filesystem"
                    )
            self._clear(parent, base)
            os.symlink(target, base, dir_fd=parent)
            with contextlib.suppress(PermissionError):
                os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
            return
        if member.islnk():
            target = member.linkname
            if target.startswith("/"):
                raise LayerError(f"{name!r}: hard link to absolute path {target!r}")
            target_parts = tuple(p for p in target.split("/") if p not in ("", "."))
            if not target_parts or ".." in target_parts:
                raise LayerError(f"{name!r}: hard link to {target!r} points outside the layer")
            if target_parts == parts:
                return
            source_parent = os.dup(self._open_dir(target_parts[:-1], name, create=False))
            try:
                parent = self._open_dir(parent_parts, name, create=True)
                try:
                    st = os.stat(target_parts[-1], dir_fd=source_parent, follow_symlinks=False)
                except FileNotFoundError:
                    raise LayerError(
                        f"{name!r}: hard link target {target!r} is not in this layer"
                    ) from None
                if stat.S_ISDIR(st.st_mode):
                    raise LayerError(f"{name!r}: hard link to a directory")
                self._clear(parent, base)
                os.link(
                    target_parts[-1],
                    base,
                    src_dir_fd=source_parent,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            except FileNotFoundError as exc:
                raise LayerError(f"{name!r}: hard link target {target!r} is missing") from exc
            finally:
                os.close(source_parent)
            return
        if member.isfifo():
            self._clear(parent, base)
            os.mkfifo(base, 0o600, dir_fd=parent)
            fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=parent)
            try:
                self._owner_mode(fd, member, mode)
            finally:
                os.close(fd)
            return
        if member.ischr() or member.isblk():
            self.warnings.append(f"skipped device node {name!r}")
            return
        self.warnings.append(f"skipped {name!r} of unsupported type {member.type!r}")

    def _whiteout(self, parent_parts: tuple[str, ...], base: str, member, mtime_ns: int) -> None:
        parent = self._open_dir(parent_parts, base, create=True)
        if base == OPAQUE_WHITEOUT:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content
        target = base[len(WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise LayerError(f"invalid whiteout {base!r}")
        self._clear(parent, target)
        os.mknod(target, stat.S_IFCHR | (member.mode & 0o777), os.makedev(0, 0), dir_fd=parent)
        with contextlib.suppress(PermissionError):
            os.chown(target, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(target, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _strip_setid(self, name: str, mode: int) -> int:
        if mode & (stat.S_ISUID | stat.S_ISGID) and not self.limits.allow_setuid:
            self.warnings.append(f"stripped set-id bits from {name!r}")
            return mode & ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    @staticmethod
    def _owner_mode(fd: int, member: tarfile.TarInfo, mode: int) -> None:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, mode)

    def _xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr.") :]
            if not attr.startswith(_KEPT_XATTR_PREFIXES):
                self.warnings.append(f"skipped xattr {attr!r} on {member.name!r}")
                continue
            with contextlib.suppress(OSError):
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))

    def finish(self) -> None:
        """Set directory mtimes last (creating their children changed them), deepest first."""
        self._drop_cache()
        for parts in sorted(self.dir_times, key=len, reverse=True):
            fd = os.dup(self._open_dir(parts, "/".join(parts), create=False))
            try:
                ns = self.dir_times[parts]
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
        self._drop_cache()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- writing --------------------------------------------------------------------------------


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = ""
    info.gname = ""
    info.mtime = int(st.st_mtime)
    info.size = 0
    return info


def _kept_xattrs(path: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return headers
    for attr in sorted(names):
        if attr.startswith(_KEPT_XATTR_PREFIXES):
            with contextlib.suppress(OSError):
                value = os.getxattr(path, attr, follow_symlinks=False)
                headers[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
    return headers


def write_layer_tar(src: Path, out: BinaryIO) -> int:
    """Write the layer directory `src` (overlayfs form) as a layer tar; returns content bytes.

    Identical trees give identical bytes.
    """
    seen: dict[tuple[int, int], str] = {}
    total = 0

    def emit_file(path: str, info: tarfile.TarInfo) -> None:
        out.write(_header(info))
        remaining = info.size
        with open(path, "rb", buffering=0) as handle:
            while remaining > 0:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:
                    raise LayerError(f"{path} shrank while being archived")
                out.write(chunk)
                remaining -= len(chunk)
        if info.size % 512:
            out.write(b"\0" * (512 - info.size % 512))

    def walk(directory: str, prefix: str) -> None:
        nonlocal total
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            path = entry.path
            name = prefix + entry.name
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == 0:
                info = _info(prefix + WHITEOUT_PREFIX + entry.name, st, tarfile.REGTYPE)
                out.write(_header(info))
            elif stat.S_ISDIR(mode):
                info = _info(name + "/", st, tarfile.DIRTYPE)
                info.pax_headers = _kept_xattrs(path)
                out.write(_header(info))
                with contextlib.suppress(OSError):
                    if os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                        opq = _info(name + "/" + OPAQUE_WHITEOUT, st, tarfile.REGTYPE)
                        out.write(_header(opq))
                walk(path, name + "/")
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    info = _info(name, st, tarfile.LNKTYPE)
                    info.linkname = seen[key]
                    out.write(_header(info))
                    continue
                if st.st_nlink > 1:
                    seen[key] = name
                info = _info(name, st, tarfile.REGTYPE)
                info.size = st.st_size
                info.pax_headers = _kept_xattrs(path)
                total += st.st_size
                emit_file(path, info)
            elif stat.S_ISLNK(mode):
                info = _info(name, st, tarfile.SYMTYPE)
                info.linkname = os.readlink(path)
                out.write(_header(info))
            elif stat.S_ISFIFO(mode):
                out.write(_header(_info(name, st, tarfile.FIFOTYPE)))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                kind = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info = _info(name, st, kind)
                info.devmajor = os.major(st.st_rdev)
                info.devminor = os.minor(st.st_rdev)
                out.write(_header(info))
            # sockets are not content: skipped, as docker does

    walk(os.fspath(src), "")
    out.write(b"\0" * 1024)
    return total


class _HashWriter:
    def __init__(self, sink: BinaryIO | None = None) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return f"sha256:{self.hasher.hexdigest()}"


def layer_diff_id(src: Path) -> str:
    """The diff ID (sha256 of the uncompressed tar) `write_layer_tar` would produce."""
    return layer_digest_and_size(src)[0]


def layer_digest_and_size(src: Path) -> tuple[str, int]:
    """The diff ID of `src` and the bytes of its regular files, from one tar pass."""
    writer = _HashWriter()
    size = write_layer_tar(src, writer)  # type: ignore[arg-type]
    return writer.digest, size


def write_layer_blob(src: Path, out: BinaryIO, *, compress: bool = True) -> tuple[str, str, int]:
    """Write `src` as a (gzip, via isal) layer blob; returns (diff_id, blob digest, blob size)."""
    blob = _HashWriter(out)
    tar = _HashWriter()
    if compress:
        from isal import igzip

        with igzip.IGzipFile(fileobj=blob, mode="wb", compresslevel=1, mtime=0) as gz:  # type: ignore[arg-type]
            tar.sink = gz  # type: ignore[assignment]
            write_layer_tar(src, tar)  # type: ignore[arg-type]
    else:
        tar.sink = blob  # type: ignore[assignment]
        write_layer_tar(src, tar)  # type: ignore[arg-type]
    return tar.digest, blob.digest, blob.size


def media_type_for(media_type: str, docker: bool = False) -> str:
    """A layer media type in the docker (v2 schema 2) or OCI vocabulary."""
    if docker:
        return {
            LAYER_TAR: "application/vnd.docker.image.rootfs.diff.tar",
            LAYER_TAR_GZIP: DOCKER_LAYER_GZIP,
            LAYER_TAR_ZSTD: "application/vnd.docker.image.rootfs.diff.tar.zstd",
        }.get(media_type, media_type)
    return {
        "application/vnd.docker.image.rootfs.diff.tar": LAYER_TAR,
        DOCKER_LAYER_GZIP: LAYER_TAR_GZIP,
    }.get(media_type, media_type)


__all__ = [
    "LAYER_TAR",
    "LAYER_TAR_GZIP",
    "LayerError",
    "LayerResult",
    "Limits",
    "apply_layer",
    "layer_diff_id",
    "write_layer_blob",
    "write_layer_tar",
]
