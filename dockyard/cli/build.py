"""`dockyard build`: the builder wired to the local store, the registry client (FROM an image
that is not local is pulled) and an HTTP client (ADD of a URL)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dockyard.cli.distribution import insecure_option

if TYPE_CHECKING:
    from dockyard.builder.build import Download
    from dockyard.engine.store import Store

MAX_DOWNLOAD_SECONDS = 600


def _pairs(values: tuple[str, ...], what: str, *, from_env: bool) -> dict[str, str]:
    """`K=V` options as a dict; a bare `K` takes the environment's value (build args)."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not key:
            raise click.UsageError(f"invalid {what} {value!r}: use KEY=VALUE")
        if sep:
            pairs[key] = rest
        elif from_env and key in os.environ:
            pairs[key] = os.environ[key]
        elif not from_env:
            pairs[key] = ""
    return pairs


def _puller(store: Store, insecure: tuple[str, ...], quiet: bool):  # type: ignore[no-untyped-def]
    def pull(reference: str) -> str:
        import asyncio

        from dockyard.builder.errors import BuildError
        from dockyard.cli.distribution import _progress
        from dockyard.cli.images_io import client_for, pull_into_store
        from dockyard.client.errors import ClientError
        from dockyard.oci.reference import InvalidReference, parse_reference

        async def run() -> str:
            ref = parse_reference(reference)
            async with client_for(ref, insecure) as client:
                with _progress(quiet) as progress:
                    outcome = await pull_into_store(store, client, ref, progress)
            return outcome.image_id

        try:
            return asyncio.run(run())
        except (ClientError, InvalidReference) as exc:
            raise BuildError(f"unable to pull the base image {reference}: {exc}") from None

    return pull


def _fetch(url: str, directory: Path) -> Download:
    """Download `url` for ADD into `directory`; the file name is the URL path's last part."""
    import email.utils
    import urllib.parse

    import httpx

    from dockyard.builder.build import Download
    from dockyard.builder.errors import BuildError
    from dockyard.engine.layers import Limits

    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rpartition("/")[2])
    if not name or name in (".", ".."):
        raise BuildError(f"ADD {url}: cannot determine a file name from the URL")
    limit = Limits.from_env().max_bytes
    target = directory / "download"
    try:
        with httpx.stream(
            "GET", url, follow_redirects=True, timeout=httpx.Timeout(30, read=MAX_DOWNLOAD_SECONDS)
        ) as response:
            if response.status_code != 200:
                raise BuildError(f"ADD {url}: the server answered {response.status_code}")
            written = 0
            with open(target, "wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    written += len(chunk)
                    if written > limit:
                        raise BuildError(f"ADD {url}: larger than {limit} bytes (the limit)")
                    handle.write(chunk)
            modified = response.headers.get("last-modified")
    except httpx.HTTPError as exc:
        raise BuildError(f"ADD {url}: download failed: {exc}") from None
    mtime = None
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            mtime = None
    return Download(target, name, mtime)


@click.command("build")
@click.argument("source", metavar="CONTEXT")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and tag, NAME[:TAG]; repeatable.")
@click.option("-f", "--file", "dockerfile", help="The Dockerfile (default CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, help="Set a build argument K=V.")
@click.option("--label", "labels", multiple=True, help="Set a label on the image K=V.")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option(
    "--cache-from",
    multiple=True,
    help="Also take cached steps from this local image (pulled, or loaded); repeatable.",
)
@click.option(
    "--rm",
    "remove",
    type=click.BOOL,
    default=True,
    is_flag=False,
    flag_value=True,
    show_default=True,
    help="Remove intermediate containers after a successful build (--rm=false keeps them).",
)
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers.")
@click.option("--target", help="Stop at this build stage.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID on success.")
@click.option(
    "--network",
    type=click.Choice(["host", "none"]),
    default="host",
    show_default=True,
    help="The network of RUN steps.",
)
@click.option("--iidfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the image ID to this file.")
@insecure_option
@click.pass_context
def build(
    ctx: click.Context,
    source: str,
    tags: tuple[str, ...],
    dockerfile: str | None,
    build_args: tuple[str, ...],
    labels: tuple[str, ...],
    no_cache: bool,
    cache_from: tuple[str, ...],
    remove: bool,
    force_rm: bool,
    target: str | None,
    quiet: bool,
    network: str,
    iidfile: Path | None,
    insecure_registries: tuple[str, ...],
) -> None:
    """Build an image from a Dockerfile and a context (a directory, `-`, or a git URL)."""
    from dockyard.builder.build import Builder, BuildOptions, Output, short
    from dockyard.builder.context import open_context
    from dockyard.builder.errors import BuildError
    from dockyard.cli.distribution import _store
    from dockyard.engine.layers import LayerError
    from dockyard.engine.store import StoreError
    from dockyard.oci.reference import InvalidReference, normalize_tag

    try:
        for tag in tags:
            normalize_tag(tag)
    except InvalidReference as exc:
        raise click.UsageError(f"invalid tag: {exc}") from None
    options = BuildOptions(
        build_args=_pairs(build_args, "--build-arg", from_env=True),
        no_cache=no_cache,
        remove=remove,
        force_remove=force_rm,
        target=target,
        labels=_pairs(labels, "--label", from_env=False),
        network=network,
        cache_from=list(cache_from),
    )
    store = _store(ctx)
    output = Output(sys.stdout.buffer, quiet=quiet)
    try:
        with store.scratch_dir("build-") as scratch:
            context = open_context(source, dockerfile, stdin=sys.stdin.buffer, scratch=scratch)
            builder = Builder(
                store,
                context,
                options,
                output,
                pull=_puller(store, insecure_registries, quiet),
                fetch=_fetch,
                scratch=scratch,
            )
            image_id = builder.build()
            named = [store.tag(image_id, tag) for tag in tags]
    except (BuildError, StoreError, LayerError) as exc:
        sys.stdout.buffer.flush()
        if quiet:
            sys.stderr.buffer.write(output.held())
        click.echo(str(exc), err=True)
        sys.exit(1)
    if iidfile is not None:
        iidfile.write_text(image_id)
    if quiet:
        click.echo(image_id)
        return
    output.line(f"Successfully built {short(image_id)}")
    for name in named:
        output.line(f"Successfully tagged {name}")


def register(main: click.Group) -> None:
    main.add_command(build)
