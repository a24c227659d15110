"""Starting the HTTP server (uvicorn, or granian when asked) for `dockyard serve`."""

from __future__ import annotations

import logging
import os
from dataclasses import fields

from dockyard.db.engine import migrate
from dockyard.server.config import Settings

log = logging.getLogger("dockyard.server")


def export(settings: Settings) -> None:
    """Hand the merged settings to worker processes through the environment."""
    for field in fields(Settings):
        value = getattr(settings, field.name)
        if value is not None:
            os.environ[f"DOCKYARD_{field.name.upper()}"] = str(value)


def _uvicorn_logging(level: str) -> dict[str, object]:
    """uvicorn's own lines in the same key=value format as Dockyard's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"logfmt": {"()": "dockyard.server.logs.LogfmtFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "logfmt"}},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dockyard")
        },
    }


def serve(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)
    export(settings)
    log.info(
        "serving addr=%s data_dir=%s auth=%s workers=%d server=%s",
        settings.addr,
        settings.data_dir,
        settings.auth,
        settings.workers,
        settings.server,
    )
    if settings.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            "dockyard.server.app:from_environment",
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            factory=True,
            log_access=settings.access_log,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        "dockyard.server.app:from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        http="httptools",
        loop="uvloop",
        timeout_keep_alive=30,
        log_config=_uvicorn_logging(settings.log_level),
        h11_max_incomplete_event_size=64 * 1024,
    )
