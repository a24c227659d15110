"""A hub with automated builds, in process; and real git repositories to build from."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.hub.conftest import HubClient, basic, hub_settings, open_client

PASSWORD = "correct horse"
WORKER_TOKEN = "worker-secret-for-tests"
OWNER = basic("alice", PASSWORD)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "Alice",
            "GIT_AUTHOR_EMAIL": "alice@example.com",
            "GIT_COMMITTER_NAME": "Alice",
            "GIT_COMMITTER_EMAIL": "alice@example.com",
            "HOME": str(cwd),
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()


def make_repository(base: Path, files: dict[str, str], branch: str = "trunk") -> Path:
    """A bare repository (the "server") with one commit of `files` on `branch`."""
    bare = base / "origin.git"
    work = base / "work"
    subprocess.run(
        ["git", "init", "-q", "--bare", f"--initial-branch={branch}", str(bare)], check=True
    )
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git("checkout", "-q", "-b", branch, cwd=work)
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first commit", cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    return bare


@pytest.fixture
async def builds_hub(tmp_path: Path) -> AsyncIterator[HubClient]:
    settings = hub_settings(
        tmp_path / "data", allow_local_sources=True, build_workers=0, worker_token=WORKER_TOKEN
    )
    client, http = await open_client(settings)
    await client.sign_up("alice", PASSWORD)
    created = await http.post("/api/v1/repositories", json={"name": "alice/app"}, headers=OWNER)
    assert created.status_code == 201
    yield client
    await http.aclose()
    for task in client.app._tasks:
        task.cancel()
    assert client.app.registry is not None
    await client.app.registry.registry.meta.engine.dispose()
