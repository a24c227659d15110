"""`dockyard login|logout|search|push|pull`: the registry half of the CLI.

Everything heavy (httpx, rich, the engine) is imported inside the commands.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dockyard.cli.images_io import Pushed
    from dockyard.client.credentials import Credentials
    from dockyard.client.progress import Progress
    from dockyard.client.registry import SearchResult
    from dockyard.engine.store import Store

insecure_option = click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST",
    help="Allow plain HTTP (and unverified TLS) for this registry; repeatable. "
    "Also DOCKYARD_INSECURE_REGISTRIES=host1,host2.",
)


def client_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Client, credential and store errors become one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dockyard.client.errors import ClientError
        from dockyard.oci.reference import InvalidReference

        try:
            return func(*args, **kwargs)
        except (ClientError, InvalidReference) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            from dockyard.engine.layers import LayerError
            from dockyard.engine.store import StoreError

            if isinstance(exc, StoreError | LayerError):
                click.echo(f"Error: {exc}", err=True)
                sys.exit(1)
            raise

    return wrapper


def default_registry() -> str:
    return os.environ.get("DOCKYARD_DEFAULT_REGISTRY", "").strip() or "docker.io"


def _api_host(server: str) -> str:
    from dockyard.client.credentials import normalize_host

    host = normalize_host(server)
    return "registry-1.docker.io" if host == "docker.io" else host


def _store(ctx: click.Context) -> Store:
    from dockyard.engine.store import Store, default_root

    root = (ctx.find_root().obj or {}).get("root")
    return Store(Path(root) if root else default_root())


# --- login / logout ------------------------------------------------------------------------------


@click.command()
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password or token (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@insecure_option
@click.argument("server", required=False)
@client_errors
def login(
    username: str | None,
    password: str | None,
    password_stdin: bool,
    insecure_registries: tuple[str, ...],
    server: str | None,
) -> None:
    """Log in to a registry (the default registry when SERVER is omitted).

    The credentials are checked against the registry first and stored only if it accepts them,
    in docker's config.json (or its credential helper). When the registry's token server issues
    a refresh token, that identity token is stored instead of the password.
    """
    import asyncio

    from dockyard.client.credentials import Credentials, CredentialStore, normalize_host

    server = normalize_host(server or default_registry())
    store = CredentialStore()
    if password and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password:
        click.echo(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True
        )
    if password_stdin:
        if not username:
            raise click.UsageError("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    if not username and not password:
        existing = store.get(server)
        if existing is not None:
            click.echo("Authenticating with existing credentials...")
            asyncio.run(_verify(server, existing, insecure_registries))
            click.echo("Login Succeeded")
            return
    if not username:
        username = click.prompt("Username", err=True)
    if not password:
        password = click.prompt("Password", hide_input=True, err=True)
    if not username or not password:
        raise click.UsageError("username and password are required")
    credentials = Credentials(username=username, password=password)
    refresh = asyncio.run(_verify(server, credentials, insecure_registries))
    if refresh:
        credentials = Credentials(username=username, identity_token=refresh)
    where = store.store(server, credentials)
    if where == str(store.path):
        click.echo(
            f"WARNING! Your credentials are stored unencrypted in '{where}'.\n"
            "Configure a credential helper (credsStore) to remove this warning.",
            err=True,
        )
    click.echo("Login Succeeded")


async def _verify(server: str, credentials: Credentials, insecure: tuple[str, ...]) -> str | None:
    from dockyard.client.errors import AuthError
    from dockyard.client.registry import RegistryClient

    async with RegistryClient(
        _api_host(server), credentials, insecure_registries=list(insecure), want_refresh_token=True
    ) as client:
        try:
            return await client.login()
        except AuthError as exc:
            raise AuthError(f"login failed: {exc}") from None


@click.command()
@click.argument("server", required=False)
@client_errors
def logout(server: str | None) -> None:
    """Forget the credentials stored for a registry."""
    from dockyard.client.credentials import CredentialStore, normalize_host

    server = normalize_host(server or default_registry())
    if CredentialStore().erase(server):
        click.echo(f"Removing login credentials for {server}")
    else:
        click.echo(f"Not logged in to {server}")


# --- search --------------------------------------------------------------------------------------


def _split_search_term(term: str) -> tuple[str, str]:
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return default_registry(), term


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(1, 100),
    default=25,
    show_default=True,
    help="Maximum number of results.",
)
@click.option("--no-trunc", is_flag=True, help="Don't truncate descriptions.")
@insecure_option
@click.argument("term")
@client_errors
def search(limit: int, no_trunc: bool, insecure_registries: tuple[str, ...], term: str) -> None:
    """Search a registry for repositories (HOST/TERM searches that registry)."""
    import asyncio

    host, text = _split_search_term(term)
    api = "index.docker.io" if host in ("docker.io", "index.docker.io") else host

    from dockyard.cli.images_io import open_client

    async def run() -> list[SearchResult]:
        async with open_client(api, host, insecure_registries) as client:
            return await client.search(text, limit)

    for line in search_table(asyncio.run(run()), no_trunc):
        click.echo(line)


def search_table(results: list[Any], no_trunc: bool) -> list[str]:
    """docker search's table: NAME DESCRIPTION STARS OFFICIAL AUTOMATED, descriptions cut at 45."""
    rows = [("NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED")]
    for item in results:
        description = " ".join(item.description.split())
        if not no_trunc and len(description) > 45:
            description = description[:44] + "…"
        rows.append(
            (
                item.name,
                description,
                str(item.stars),
                "[OK]" if item.official else "",
                "[OK]" if item.automated else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "   ".join([*(row[i].ljust(widths[i]) for i in range(4)), row[4]]).rstrip() for row in rows
    ]


# --- progress display ----------------------------------------------------------------------------


class PlainProgress:
    """Lines like docker prints when output is not a terminal."""

    def __init__(self) -> None:
        self.shown: set[tuple[str, str]] = set()

    def start(self, key: str, action: str, total: int | None) -> None:
        if action in ("Pushing", "Downloading") and (key, action) not in self.shown:
            self.shown.add((key, action))
            click.echo(f"{key}: {action}")

    def advance(self, key: str, completed: int) -> None:
        pass

    def finish(self, key: str, status: str) -> None:
        click.echo(f"{key}: {status}")

    def message(self, text: str) -> None:
        click.echo(text)


class RichProgress:
    """One bar per layer, drawn by rich."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.fields[key]}:"),
            TextColumn("{task.description:<20}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def _task(self, key: str, total: int | None = None) -> Any:
        if key not in self.tasks:
            self.tasks[key] = self.bars.add_task("Waiting", key=key, total=total)
        return self.tasks[key]

    def start(self, key: str, action: str, total: int | None) -> None:
        task = self._task(key, total)
        self.bars.update(task, description=action, **({"total": total} if total else {}))

    def advance(self, key: str, completed: int) -> None:
        self.bars.update(self._task(key), completed=completed)

    def finish(self, key: str, status: str) -> None:
        task = self._task(key)
        total = next((t.total for t in self.bars.tasks if t.id == task), None)
        self.bars.update(task, description=status, **({"completed": total} if total else {}))

    def message(self, text: str) -> None:
        self.bars.console.print(text, highlight=False)


def _progress(quiet: bool) -> AbstractContextManager[Progress]:
    import contextlib

    from dockyard.client.progress import NoProgress

    if quiet:
        return contextlib.nullcontext(NoProgress())
    if sys.stdout.isatty():
        return RichProgress()
    return contextlib.nullcontext(PlainProgress())


# --- push / pull ---------------------------------------------------------------------------------


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@insecure_option
@click.argument("name")
@click.pass_context
@client_errors
def push(ctx: click.Context, quiet: bool, insecure_registries: tuple[str, ...], name: str) -> None:
    """Push an image (NAME:TAG), or every local tag of a repository (NAME), to a registry."""
    import asyncio

    from dockyard.cli.images_io import client_for, push_from_store
    from dockyard.oci.reference import parse_reference

    ref = parse_reference(name)
    store = _store(ctx)

    async def run() -> list[Pushed]:
        async with client_for(ref, insecure_registries) as client:
            with _progress(quiet) as progress:
                return await push_from_store(store, client, ref, progress)

    for pushed in asyncio.run(run()):
        if quiet:
            click.echo(f"{ref.repository}:{pushed.tag}")
        else:
            click.echo(f"{pushed.tag}: digest: {pushed.digest} size: {pushed.size}")


@click.command()
@click.option("-a", "--all-tags", is_flag=True, help="Download all tags of the repository.")
@click.option("--platform", help="os/arch[/variant] to pick from a multi-platform image.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@insecure_option
@click.argument("name")
@click.pass_context
@client_errors
def pull(
    ctx: click.Context,
    all_tags: bool,
    platform: str | None,
    quiet: bool,
    insecure_registries: tuple[str, ...],
    name: str,
) -> None:
    """Pull an image (NAME[:TAG|@DIGEST]) from a registry into the local store."""
    import asyncio

    from dockyard.cli.images_io import client_for, pull_into_store
    from dockyard.client.transfer import Platform
    from dockyard.client.transfer import all_tags as list_all_tags
    from dockyard.oci.reference import parse_reference

    ref = parse_reference(name)
    if all_tags and (ref.tag or ref.digest):
        raise click.UsageError("tag can't be used with --all-tags/-a")
    wanted = Platform.parse(platform) if platform else None
    store = _store(ctx)

    async def run() -> list[str]:
        pulled = []
        async with client_for(ref, insecure_registries) as client:
            tags = await list_all_tags(client, ref.path) if all_tags else [None]
            for tag in tags:
                with _progress(quiet) as progress:
                    outcome = await pull_into_store(
                        store, client, ref, progress, platform=wanted, tag=tag
                    )
                shown = f"{ref.repository}:{outcome.tag}" if outcome.tag else str(ref)
                if not quiet:
                    status = "Downloaded newer image" if outcome.new else "Image is up to date"
                    click.echo(f"Digest: {outcome.digest}\nStatus: {status} for {shown}")
                pulled.append(shown)
        return pulled

    pulled = asyncio.run(run())
    if quiet:
        for line in pulled:
            click.echo(line)
    elif not all_tags:
        click.echo(
            f"{ref.domain}/{ref.path}"
            + (f"@{ref.digest}" if ref.digest else f":{ref.tag or 'latest'}")
        )


def register(main: click.Group) -> None:
    for command in (login, logout, search, push, pull):
        main.add_command(command)
