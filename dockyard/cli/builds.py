"""`dockyard worker` (a build worker for a hub) and `dockyard builds …` (follow builds)."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import click


@click.command()
@click.option("--hub", "hub_url", required=True, help="The hub's URL, e.g. https://hub.example.")
@click.option(
    "--token",
    envvar="DOCKYARD_WORKER_TOKEN",
    required=True,
    help="The hub's worker token (its worker_token setting). [env DOCKYARD_WORKER_TOKEN]",
)
@click.option("--name", default=None, help="How the hub lists this worker. [default: hostname]")
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkouts and the worker's image store. [default: ~/.cache/dockyard-worker]",
)
def worker(hub_url: str, token: str, name: str | None, work_dir: Path | None) -> None:
    """Run builds for a hub: lease a job, clone, build, push, report, and again."""
    import asyncio
    import logging

    from dockyard.builds.remote import RemoteJobs
    from dockyard.builds.workdirs import WorkDirBusy, claim_work_dir
    from dockyard.builds.worker import Worker
    from dockyard.server.logs import configure

    configure("info")
    name = name or socket.gethostname()
    root = work_dir or Path.home() / ".cache" / "dockyard-worker"
    try:
        claim_work_dir(root)
    except WorkDirBusy as exc:
        raise click.ClickException(f"{exc}; give this one its own --work-dir") from None
    logging.getLogger("dockyard.builds").info("worker started name=%s hub=%s", name, hub_url)

    async def run() -> None:
        jobs = RemoteJobs(hub_url, token, name)
        try:
            await Worker(jobs, root, name).run_forever()
        finally:
            await jobs.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@click.group()
def builds() -> None:
    """Automated builds on a hub."""


@builds.command("logs")
@click.argument("build_id", type=int)
@click.option(
    "--hub",
    "hub_url",
    envvar="DOCKYARD_HUB",
    required=True,
    help="The hub's URL. [env DOCKYARD_HUB]",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the build ends.")
@click.option("-u", "--username", envvar="DOCKYARD_USERNAME", default=None)
@click.option(
    "--token",
    envvar="DOCKYARD_TOKEN",
    default=None,
    help="An access token (needed for private repositories). [env DOCKYARD_TOKEN]",
)
def logs(
    build_id: int, hub_url: str, follow: bool, username: str | None, token: str | None
) -> None:
    """Print a build's log."""
    import httpx

    auth = (username, token) if username and token else None
    url = f"{hub_url.rstrip('/')}/api/v1/builds/{build_id}/logs"
    with httpx.Client(auth=auth, timeout=None) as client:
        if follow:
            with client.stream("GET", url, params={"follow": "1"}) as response:
                _check(response)
                for chunk in response.iter_text():
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            status = client.get(url).json()["status"]
        else:
            response = client.get(url)
            _check(response)
            body = response.json()
            sys.stdout.write("".join(entry["text"] for entry in body["entries"]))
            status = body["status"]
    if status not in ("success", "queued", "cloning", "building", "pushing"):
        raise click.ClickException(f"build {build_id} ended: {status}")


def _check(response) -> None:  # type: ignore[no-untyped-def]
    if response.status_code == 404:
        raise click.ClickException("no such build (or it is in a repository you cannot see)")
    if response.status_code >= 400:
        response.read()
        raise click.ClickException(f"the hub answered {response.status_code}: {response.text}")


def register(main: click.Group) -> None:
    main.add_command(worker)
    main.add_command(builds)
