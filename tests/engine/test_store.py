"""The store under concurrent use, references, and docker-style formatting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli.humanize import human_duration, human_size
from dockyard.oci.reference import InvalidReference, normalize_tag, parse_reference
from tests.engine.conftest import Dockyard


@pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")
def test_concurrent_imports_and_tags(dy: Dockyard, rootfs_tar: Path) -> None:
    commands = [
        [
            sys.executable,
            "-m",
            "dockyard",
            "--root",
            str(dy.root),
            "import",
            str(rootfs_tar),
            f"t{i}",
        ]
        for i in range(4)
    ]
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
    assert len(list((dy.root / "layers").iterdir())) == 1
    tags = sorted(line.split()[0] for line in dy("images").stdout.splitlines()[1:])
    assert tags == ["t0", "t1", "t2", "t3"]
    assert list((dy.root / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("text", "tag", "full"),
    [
        ("busybox", "busybox:latest", "docker.io/library/busybox"),
        ("library/busybox:1.36", "busybox:1.36", "docker.io/library/busybox"),
        ("docker.io/alice/web:v1", "alice/web:v1", "docker.io/alice/web"),
        ("index.docker.io/alice/web", "alice/web:latest", "docker.io/alice/web"),
        ("localhost:5000/my_image:v1", "localhost:5000/my_image:v1", "localhost:5000/my_image"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000/a/b/c"),
        ("localhost/x", "localhost/x:latest", "localhost/x"),
    ],
)
def test_references_normalise_like_docker(text: str, tag: str, full: str) -> None:
    assert normalize_tag(text) == tag
    assert parse_reference(text).full_repository == full


@pytest.mark.parametrize(
    "text", ["", "UPPER", "a:b:c", "a@sha256:12", "x/:y", "-x", "a:" + "t" * 129]
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        normalize_tag(text)


def test_human_sizes_and_durations_match_docker() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 4_261_000, 77_800_000, 187_000_000)] == [
        "0B",
        "999B",
        "1kB",
        "4.26MB",
        "77.8MB",
        "187MB",
    ]
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(30) == "30 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(3600) == "About an hour"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(20 * 86400) == "2 weeks"
