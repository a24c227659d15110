"""Layer tars: apply (overlay form), write back (reproducible), and the safety rules."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from dockyard.engine.layers import (
    OPAQUE_XATTR,
    LayerError,
    Limits,
    apply_layer,
    layer_diff_id,
    write_layer_blob,
    write_layer_tar,
)
from dockyard.oci.image import EMPTY_LAYER_DIFF_ID
from tests.engine.conftest import add_entry, add_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need root (mknod)")


def make_tar(build, compress: str = "") -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    data = buffer.getvalue()
    if compress == "gzip":
        return gzip.compress(data)
    return data


def apply_bytes(data: bytes, dest: Path, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    dest.mkdir(exist_ok=True)
    return apply_layer(io.BytesIO(data), dest, limits)


def test_empty_layer_is_dockers_well_known_digest(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = io.BytesIO()
    write_layer_tar(empty, out)
    assert out.getvalue() == b"\0" * 1024
    assert layer_diff_id(empty) == EMPTY_LAYER_DIFF_ID


def test_apply_computes_diff_id_and_blob_digest(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "a", tarfile.DIRTYPE)
        add_file(tar, "a/file", b"hello", mode=0o640, uid=12, gid=34)
        add_entry(tar, "a/link", tarfile.SYMTYPE, linkname="file")
        add_entry(tar, "a/hard", tarfile.LNKTYPE, linkname="a/file")

    plain = make_tar(build)
    packed = gzip.compress(plain)
    result = apply_bytes(packed, tmp_path / "out")
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert result.blob_digest == "sha256:" + hashlib.sha256(packed).hexdigest()
    assert result.media_type.endswith("tar+gzip")
    st = os.stat(tmp_path / "out/a/file")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink) == (0o640, 12, 34, 2)
    assert int(st.st_mtime) == 1_700_000_000
    assert int(os.stat(tmp_path / "out/a").st_mtime) == 1_700_000_000
    assert os.readlink(tmp_path / "out/a/link") == "file"


def test_whiteouts_become_overlay_form_and_back(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "etc", tarfile.DIRTYPE)
        add_file(tar, "etc/.wh.gone", b"")
        add_entry(tar, "opaque", tarfile.DIRTYPE)
        add_file(tar, "opaque/.wh..wh..opq", b"")
        add_file(tar, "opaque/kept", b"k")

    out = tmp_path / "out"
    apply_bytes(make_tar(build), out)
    gone = os.lstat(out / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(out / "opaque", OPAQUE_XATTR) == b"y"

    written = io.BytesIO()
    write_layer_tar(out, written)
    with tarfile.open(fileobj=io.BytesIO(written.getvalue())) as tar:
        names = tar.getnames()
    assert names == ["etc", "etc/.wh.gone", "opaque", "opaque/.wh..wh..opq", "opaque/kept"]
    # applying what we wrote gives a tree that writes the very same bytes
    again = tmp_path / "again"
    result = apply_bytes(written.getvalue(), again)
    assert result.diff_id == layer_diff_id(out) == layer_diff_id(again)


def test_written_tars_are_reproducible(tmp_path: Path) -> None:
    trees = []
    for name in ("one", "two"):
        root = tmp_path / name
        for sub in ("z", "a", "m/n"):
            (root / sub).mkdir(parents=True)
        for rel, data in (("z/f", b"1"), ("a/f", b"2"), ("m/n/f", b"3"), ("b", b"4")):
            (root / rel).write_bytes(data)
        for path in sorted(root.rglob("*"), reverse=True):
            os.utime(path, (1_600_000_000, 1_600_000_000))
        trees.append(root)
    outputs = []
    for root in trees:
        buffer = io.BytesIO()
        write_layer_tar(root, buffer)
        outputs.append(buffer.getvalue())
    assert outputs[0] == outputs[1]
    with tarfile.open(fileobj=io.BytesIO(outputs[0])) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "a/f", "b", "m", "m/n", "m/n/f", "z", "z/f"]
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    assert {m.mtime for m in members} == {1_600_000_000}  # real mtimes are kept


def test_gzip_blob_via_isal(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_bytes(b"x" * 100_000)
    out = io.BytesIO()
    diff_id, digest, size = write_layer_blob(tmp_path / "src", out)
    data = out.getvalue()
    assert size == len(data) < 10_000
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    assert diff_id == layer_diff_id(tmp_path / "src")


# --- safety ---------------------------------------------------------------------------------


def _refused(build, tmp_path: Path, match: str, limits: Limits | None = None) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "victim").write_text("original")
    with pytest.raises(LayerError, match=match):
        apply_bytes(make_tar(build), tmp_path / "dest", limits)
    assert (outside / "victim").read_text() == "original"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


def test_dotdot_entries_are_refused(tmp_path: Path) -> None:
    _refused(lambda t: add_file(t, "../outside/victim", b"pwned"), tmp_path, "'..'")


def test_absolute_entries_are_refused(tmp_path: Path) -> None:
    target = str(tmp_path / "outside/victim")
    _refused(lambda t: add_file(t, target, b"pwned"), tmp_path, "absolute")


def test_writing_through_a_symlink_is_refused(tmp_path: Path) -> None:
    outside = str(tmp_path / "outside")

    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "escape", tarfile.SYMTYPE, linkname=outside)
        add_file(tar, "escape/victim", b"pwned")

    _refused(build, tmp_path, "symlink")


def test_writing_through_a_nested_symlink_dir_is_refused(tmp_path: Path) -> None:
    outside = str(tmp_path / "outside")

    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "d", tarfile.DIRTYPE)
        add_entry(tar, "d/link", tarfile.SYMTYPE, linkname=outside)
        add_file(tar, "d/link/new", b"pwned")

    _refused(build, tmp_path, "symlink")


def test_relative_symlink_climbing_out_is_refused(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "a", tarfile.DIRTYPE)
        add_entry(tar, "a/up", tarfile.SYMTYPE, linkname="../../outside")

    _refused(build, tmp_path, "outside the root")


def test_absolute_symlinks_inside_the_image_are_fine(tmp_path: Path) -> None:
    apply_bytes(
        make_tar(lambda t: add_entry(t, "sh", tarfile.SYMTYPE, linkname="/bin/busybox")),
        tmp_path / "dest",
    )
    assert os.readlink(tmp_path / "dest/sh") == "/bin/busybox"


def test_hardlink_outside_is_refused(tmp_path: Path) -> None:
    target = "../outside/victim"
    _refused(lambda t: add_entry(t, "h", tarfile.LNKTYPE, linkname=target), tmp_path, "outside")
    absolute = str(tmp_path / "outside/victim")
    _refused(lambda t: add_entry(t, "h", tarfile.LNKTYPE, linkname=absolute), tmp_path, "absolute")


def test_hardlink_through_symlink_is_refused(tmp_path: Path) -> None:
    outside = str(tmp_path / "outside")

    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "s", tarfile.SYMTYPE, linkname=outside)
        add_entry(tar, "h", tarfile.LNKTYPE, linkname="s/victim")

    _refused(build, tmp_path, "symlink")


def test_device_nodes_are_skipped_and_setuid_stripped(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_entry(tar, "sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
        add_file(tar, "su", b"#!", mode=0o4755)

    result = apply_bytes(make_tar(build), tmp_path / "dest", Limits(allow_setuid=False))
    assert not (tmp_path / "dest/null").exists() and not (tmp_path / "dest/sda").exists()
    assert stat.S_IMODE(os.stat(tmp_path / "dest/su").st_mode) == 0o755
    assert any("device" in w for w in result.warnings)
    assert any("set-id" in w for w in result.warnings)

    kept = apply_bytes(make_tar(build), tmp_path / "kept", Limits(allow_setuid=True))
    assert stat.S_IMODE(os.stat(tmp_path / "kept/su").st_mode) == 0o4755
    assert not any("set-id" in w for w in kept.warnings)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("zeros")
        info.size = 16 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))

    bomb = make_tar(build, "gzip")
    assert len(bomb) < 50_000
    limits = Limits(max_ratio=100, ratio_grace_bytes=1 << 20)
    started = time.monotonic()
    with pytest.raises(LayerError, match="decompression bomb"):
        apply_bytes(bomb, tmp_path / "dest", limits)
    assert time.monotonic() - started < 5
    with pytest.raises(LayerError, match="more than 1048576 bytes"):
        apply_bytes(bomb, tmp_path / "dest2", Limits(max_bytes=1 << 20))


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        for i in range(200):
            add_file(tar, f"f{i}", b"")

    with pytest.raises(LayerError, match="more than 100 entries"):
        apply_bytes(make_tar(build), tmp_path / "dest", Limits(max_entries=100))


def test_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not a valid layer"):
        apply_bytes(b"this is not a tarball at all" * 40, tmp_path / "dest")
    with pytest.raises(LayerError):
        apply_bytes(gzip.compress(b"\x00garbage" * 100), tmp_path / "dest2")


def test_trusted_xattrs_from_a_tar_are_not_applied(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
        tar.addfile(info)

    result = apply_bytes(make_tar(build), tmp_path / "dest")
    with pytest.raises(OSError):
        os.getxattr(tmp_path / "dest/d", OPAQUE_XATTR)
    assert any("xattr" in w for w in result.warnings)
