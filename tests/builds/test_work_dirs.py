"""A build worker's work dir is its own: claimed with a lock, the next free one for the next."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.builds.workdirs import WorkDirBusy, claim_free_work_dir, claim_work_dir
from tests.conftest import REPO_ROOT


def test_a_claimed_work_dir_is_refused_to_another_claim(tmp_path: Path) -> None:
    fd = claim_work_dir(tmp_path / "w")
    with pytest.raises(WorkDirBusy, match="another build worker"):
        claim_work_dir(tmp_path / "w")
    os.close(fd)
    os.close(claim_work_dir(tmp_path / "w"))  # free again once its holder is gone


def test_in_process_workers_take_the_next_free_dir(tmp_path: Path) -> None:
    first, fd1 = claim_free_work_dir(tmp_path)
    second, fd2 = claim_free_work_dir(tmp_path)
    assert (first.name, second.name) == ("worker-0", "worker-1")
    os.close(fd1)
    again, fd3 = claim_free_work_dir(tmp_path)
    assert again.name == "worker-0"  # a restarted hub gets its cache back
    os.close(fd2)
    os.close(fd3)


def test_dockyard_worker_refuses_a_work_dir_in_use(tmp_path: Path) -> None:
    fd = claim_work_dir(tmp_path / "shared")
    command = [sys.executable, "-m", "dockyard", "worker", "--hub", "http://127.0.0.1:9"]
    command += ["--token", "t", "--work-dir", str(tmp_path / "shared")]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    os.close(fd)
    assert result.returncode != 0
    assert "give this one its own --work-dir" in result.stderr
