"""Where in-process build workers push: the hub's own listening address, reachable from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.server.app import open_builds, open_hub, open_registry
from tests.hub.conftest import hub_settings


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("0.0.0.0:5002", "http://127.0.0.1:5002"),
        ("[::]:5003", "http://127.0.0.1:5003"),
        ("[::1]:5004", "http://[::1]:5004"),
    ],
)
async def test_in_process_workers_push_to_the_listening_address(
    tmp_path: Path, addr: str, expected: str
) -> None:
    settings = hub_settings(tmp_path / "data", addr=addr)
    registry = open_registry(settings)
    builds = open_builds(settings, open_hub(settings, registry))
    assert builds.registry_url == expected
    await registry.meta.engine.dispose()
