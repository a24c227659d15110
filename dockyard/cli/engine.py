"""Local image and container commands (`images`, `run`, `commit`, `save`, …) over the engine.

Every command imports the engine only when it runs, so `dockyard --help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def _store(ctx: click.Context):  # type: ignore[no-untyped-def]
    from dockyard.engine.store import Store, default_root

    root = (ctx.find_root().obj or {}).get("root")
    try:
        return Store(Path(root) if root else default_root())
    except PermissionError as exc:
        raise click.ClickException(f"cannot use the store at {exc.filename}: {exc}") from exc


def engine_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn store, layer and runtime errors into one-line messages and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dockyard.engine.changes import InvalidChange
        from dockyard.engine.layers import LayerError
        from dockyard.engine.runtime import RuntimeConfigError
        from dockyard.engine.store import StoreError
        from dockyard.oci.image import InvalidImageConfig
        from dockyard.oci.reference import InvalidReference

        try:
            return func(*args, **kwargs)
        except (
            StoreError,
            LayerError,
            RuntimeConfigError,
            InvalidChange,
            InvalidImageConfig,
            InvalidReference,
        ) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


# --- images ---------------------------------------------------------------------------------


@click.command("import")
@click.argument("tarball")
@click.argument("name", required=False)
@click.option("-m", "--message", default="", help="Commit message for the imported image.")
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction.")
@click.option(
    "--allow-setuid", is_flag=True, help="Keep set-uid/set-gid bits (stripped by default)."
)
@click.pass_context
@engine_errors
def import_(ctx, tarball, name, message, changes, allow_setuid) -> None:  # type: ignore[no-untyped-def]
    """Import a root filesystem tarball (plain or compressed; - for stdin) as an image."""
    from dockyard.engine.images import import_tarball
    from dockyard.engine.layers import Limits

    store = _store(ctx)
    limits = Limits.from_env(allow_setuid=allow_setuid)
    if tarball == "-":
        source = sys.stdin.buffer
        result = import_tarball(
            store, source, tag=name, message=message, changes=list(changes), limits=limits
        )
    else:
        try:
            handle = open(tarball, "rb")  # noqa: SIM115
        except OSError as exc:
            raise click.ClickException(f"cannot open {tarball}: {exc.strerror}") from exc
        with handle:
            result = import_tarball(
                store,
                handle,
                tag=name,
                message=message,
                changes=list(changes),
                origin=tarball,
                limits=limits,
            )
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    click.echo(result.image_id)


@click.command("images")
@click.argument("repository", required=False)
@click.option("-a", "--all", "all_images", is_flag=True, help="Show intermediate images too.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Show full image IDs.")
@click.pass_context
@engine_errors
def images(ctx, repository, all_images, quiet, no_trunc) -> None:  # type: ignore[no-untyped-def]
    """List images: REPOSITORY TAG IMAGE ID CREATED SIZE."""
    from dockyard.cli.humanize import ago, human_size, table
    from dockyard.engine.images import list_images

    rows = list_images(_store(ctx), all_images=all_images)
    if repository:
        wanted_repo, _, wanted_tag = repository.partition(":")
        from dockyard.oci.reference import parse_reference

        with contextlib.suppress(ValueError):
            wanted_repo = parse_reference(wanted_repo).repository
        rows = [
            r
            for r in rows
            if r.repository == wanted_repo and (not wanted_tag or r.tag == wanted_tag)
        ]
    if quiet:
        seen: list[str] = []
        for row in rows:
            shown = row.id if no_trunc else _short(row.id)
            if shown not in seen:
                seen.append(shown)
        if seen:
            click.echo("\n".join(seen))
        return
    now = time.time()
    cells = [
        [
            r.repository,
            r.tag,
            r.id if no_trunc else _short(r.id),
            ago(r.created, now),
            human_size(r.size),
        ]
        for r in rows
    ]
    click.echo(table(cells, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]))


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
@engine_errors
def tag(ctx, source, target) -> None:  # type: ignore[no-untyped-def]
    """Create a tag TARGET that refers to SOURCE."""
    store = _store(ctx)
    store.tag(store.resolve_image(source), target)


@click.command("rmi")
@click.argument("refs", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.pass_context
@engine_errors
def rmi(ctx, refs, force) -> None:  # type: ignore[no-untyped-def]
    """Remove one or more images."""
    from dockyard.engine.images import remove_images

    lines, errors = remove_images(_store(ctx), list(refs), force=force)
    for line in lines:
        click.echo(line, err=line.startswith("Error"))
    if errors:
        sys.exit(1)


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("--type", "kind", type=click.Choice(["image", "container"]))
@click.pass_context
@engine_errors
def inspect(ctx, names, kind) -> None:  # type: ignore[no-untyped-def]
    """Show low-level information on images or containers, as JSON."""
    from dockyard.engine.containers import Containers
    from dockyard.engine.images import inspect_image
    from dockyard.engine.store import NotFound

    store = _store(ctx)
    results: list[dict[str, Any]] = []
    failed = False
    for name in names:
        try:
            if kind != "container":
                try:
                    results.append(inspect_image(store, store.resolve_image(name)))
                    continue
                except NotFound:
                    if kind == "image":
                        raise
            results.append(_inspect_container(store, Containers(store).get(name)))
        except NotFound:
            click.echo(f"Error: No such object: {name}", err=True)
            failed = True
    click.echo(json.dumps(results, indent=4))
    if failed:
        sys.exit(1)


def _inspect_container(store, container) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from dockyard.engine.containers import Containers

    state = Containers(store).state(container)
    status = state.get("status", "created")
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": container.path,
        "Args": container.args,
        "State": {
            "Status": status,
            "Running": status == "running",
            "ExitCode": state.get("exit_code") or 0,
            "Error": state.get("error") or "",
            "StartedAt": state.get("started_at") or "",
            "FinishedAt": state.get("finished_at") or "",
        },
        "Image": container.image_id,
        "Name": "/" + container.name,
        "HostConfig": {
            "Binds": container.binds or None,
            "NetworkMode": container.network,
            "AutoRemove": container.auto_remove,
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"UpperDir": str(container.upper), "MergedDir": str(container.rootfs)},
        },
        "Config": container.config,
    }


@click.command("history")
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("-H", "--human", type=bool, default=True, help="Human-readable sizes and dates.")
@click.pass_context
@engine_errors
def history(ctx, name, no_trunc, quiet, human) -> None:  # type: ignore[no-untyped-def]
    """Show the history of an image."""
    from dockyard.cli.humanize import ago, human_size, table
    from dockyard.engine.images import image_history

    store = _store(ctx)
    rows = image_history(store, store.resolve_image(name))
    if quiet:
        click.echo("\n".join(r.image if no_trunc else _short(r.image) for r in rows))
        return
    now = time.time()
    cells = []
    for r in rows:
        image = r.image if (no_trunc or r.image == "<missing>") else _short(r.image)
        created_by = r.created_by
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        created = ago(r.created, now) if human else str(r.created)
        size = human_size(r.size) if human else str(r.size)
        cells.append([image, created, created_by, size, r.comment])
    click.echo(table(cells, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]))


@click.command("prune")
@click.option("-a", "--all", "all_images", is_flag=True, help="Remove all unused images.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
@engine_errors
def image_prune(ctx, all_images, force) -> None:  # type: ignore[no-untyped-def]
    """Remove unused images (dangling ones; with -a every image no container uses)."""
    from dockyard.cli.humanize import human_size
    from dockyard.engine.images import prune_images

    if not force:
        what = (
            "all images without at least one container associated to them"
            if all_images
            else ("all dangling images")
        )
        click.confirm(
            f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True
        )
    lines, freed = prune_images(_store(ctx), all_images=all_images)
    if lines:
        click.echo("Deleted Images:")
        click.echo("\n".join(lines))
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@click.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker-archive (also an OCI layout) or a plain OCI image layout.",
)
@click.pass_context
@engine_errors
def save(ctx, names, output, fmt) -> None:  # type: ignore[no-untyped-def]
    """Save one or more images to a tar archive (stdout unless -o)."""
    import os

    from dockyard.engine.archive import save as save_archive

    store = _store(ctx)
    if output:
        path = Path(output)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                save_archive(store, list(names), handle, fmt=fmt)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return
    if sys.stdout.isatty():
        raise click.ClickException(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
        )
    save_archive(store, list(names), sys.stdout.buffer, fmt=fmt)
    sys.stdout.buffer.flush()


@click.command("load")
@click.option("-i", "--input", "input_", type=click.Path(exists=True, dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@click.pass_context
@engine_errors
def load(ctx, input_, quiet) -> None:  # type: ignore[no-untyped-def]
    """Load images from a docker-archive or OCI layout tarball (stdin unless -i)."""
    from dockyard.engine.archive import load as load_archive

    store = _store(ctx)
    source = Path(input_) if input_ else sys.stdin.buffer
    lines = load_archive(store, source)
    if not quiet:
        for line in lines:
            click.echo(line)


# --- containers -----------------------------------------------------------------------------


@click.command(
    "run", context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]}
)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True, help="Run in the background, print its ID.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--name", help="Assign a name to the container.")
@click.option("-e", "--env", "env", multiple=True, help="Set an environment variable K=V.")
@click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount /host:/ctr[:ro].")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="user[:group] (names or numbers).")
@click.option("--entrypoint", help="Overwrite the image's entrypoint.")
@click.option("-h", "--hostname", help="Container host name.")
@click.option(
    "--network",
    "--net",
    type=click.Choice(["host", "none"]),
    default="host",
    show_default=True,
    help="host shares the host's network; none gives only a loopback device.",
)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached.")
@click.option("-t", "--tty", is_flag=True, hidden=True)
@click.pass_context
@engine_errors
def run(
    ctx,
    image,
    command,
    detach,
    auto_remove,
    name,
    env,
    volumes,
    workdir,
    user,  # type: ignore[no-untyped-def]
    entrypoint,
    hostname,
    network,
    interactive,
    tty,
) -> None:
    """Run a command in a new container (runc over an overlayfs root)."""
    from dockyard.engine.containers import create_container
    from dockyard.engine.runner import monitor, start_detached

    store = _store(ctx)
    if tty:
        click.echo("WARNING: -t is not supported; running without a terminal", err=True)
    container = create_container(
        store,
        image,
        list(command),
        name=name,
        env=list(env),
        binds=list(volumes),
        workdir=workdir,
        user=user,
        entrypoint=entrypoint,
        network=network,
        hostname=hostname,
        auto_remove=auto_remove,
    )
    if detach:
        start_detached(store, container)
        click.echo(container.id)
        return
    code = monitor(
        store,
        container,
        attach=True,
        stdin=0 if interactive else None,
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
    )
    sys.exit(code)


def _status(state: dict[str, Any], now: float) -> str:
    from dockyard.cli.humanize import ago, human_duration
    from dockyard.oci.image import parse_time

    status = state.get("status", "created")
    if status in ("running", "starting"):
        started = parse_time(state.get("started_at")) or now
        return f"Up {human_duration(now - started)}"
    if status == "exited":
        return (
            f"Exited ({state.get('exit_code', 0)}) {ago(parse_time(state.get('finished_at')), now)}"
        )
    return "Created"


@click.command("ps")
@click.option("-a", "--all", "all_containers", is_flag=True, help="Show all containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.pass_context
@engine_errors
def ps(ctx, all_containers, quiet, no_trunc) -> None:  # type: ignore[no-untyped-def]
    """List containers (running ones unless -a)."""
    from dockyard.cli.humanize import ago, table
    from dockyard.engine.containers import Containers
    from dockyard.oci.image import parse_time

    store = _store(ctx)
    containers = Containers(store)
    now = time.time()
    rows = []
    for container in containers.all():
        state = containers.state(container)
        if not all_containers and state.get("status") not in ("running", "starting"):
            continue
        command = " ".join(container.argv)
        if not no_trunc and len(command) > 19:
            command = command[:19] + "…"
        rows.append(
            [
                container.id if no_trunc else container.short_id,
                container.image,
                f'"{command}"',
                ago(parse_time(container.created), now),
                _status(state, now),
                "",
                container.name,
            ]
        )
    if quiet:
        if rows:
            click.echo("\n".join(r[0] for r in rows))
        return
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    click.echo(table(rows, headers))


@click.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("-n", "--tail", default="all", help="Lines to show from the end.")
@click.pass_context
@engine_errors
def logs(ctx, name, follow, timestamps, tail) -> None:  # type: ignore[no-untyped-def]
    """Fetch the output of a container."""
    from dockyard.engine.containers import Containers

    store = _store(ctx)
    containers = Containers(store)
    container = containers.get(name)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def emit(line: bytes) -> None:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            text = record.get("log", "")
            if timestamps:
                text = f"{record.get('time', '')} {text}"
            sink = err if record.get("stream") == "stderr" else out
            sink.write(text.encode())
            sink.flush()

    try:
        handle = open(container.log_path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    with handle:
        lines = handle.readlines()
        if tail != "all":
            count = int(tail)
            lines = lines[-count:] if count > 0 else []
        for line in lines:
            emit(line)
        if not follow:
            return
        pending = b""
        while True:
            chunk = handle.readline()
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    emit(pending)
                    pending = b""
                continue
            if not container.dir.exists():
                return
            state = containers.state(container)
            if state.get("status") not in ("running", "starting"):
                rest = handle.read()
                for line in rest.splitlines(keepends=True):
                    emit(line)
                return
            time.sleep(0.1)


@click.command("stop")
@click.argument("names", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=float, default=10, show_default=True)
@click.pass_context
@engine_errors
def stop(ctx, names, timeout) -> None:  # type: ignore[no-untyped-def]
    """Stop running containers (SIGTERM, then SIGKILL after the grace period)."""
    from dockyard.engine.containers import Containers
    from dockyard.engine.runner import stop as stop_container

    store = _store(ctx)
    for name in names:
        stop_container(store, Containers(store).get(name), timeout)
        click.echo(name)


@click.command("start")
@click.argument("names", nargs=-1, required=True)
@click.option("-a", "--attach", is_flag=True, help="Attach stdout/stderr, exit with its code.")
@click.pass_context
@engine_errors
def start(ctx, names, attach) -> None:  # type: ignore[no-untyped-def]
    """Start stopped containers."""
    from dockyard.engine.containers import Containers
    from dockyard.engine.runner import monitor, start_detached

    store = _store(ctx)
    for name in names:
        container = Containers(store).get(name)
        if attach:
            sys.exit(
                monitor(
                    store,
                    container,
                    attach=True,
                    stdout=sys.stdout.buffer,
                    stderr=sys.stderr.buffer,
                )
            )
        start_detached(store, container)
        click.echo(name)


@click.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container.")
@click.pass_context
@engine_errors
def rm(ctx, names, force) -> None:  # type: ignore[no-untyped-def]
    """Remove containers."""
    from dockyard.engine.containers import Containers
    from dockyard.engine.runner import remove
    from dockyard.engine.store import StoreError

    store = _store(ctx)
    failed = False
    for name in names:
        try:
            remove(store, Containers(store).get(name), force=force)
            click.echo(name)
        except StoreError as exc:
            click.echo(f"Error response from daemon: {exc}", err=True)
            failed = True
    store.collect_layers()
    if failed:
        sys.exit(1)


@click.command("commit")
@click.argument("container_name")
@click.argument("name", required=False)
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-a", "--author", default="", help='Author (e.g. "Jane <jane@example.com>").')
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction.")
@click.pass_context
@engine_errors
def commit(ctx, container_name, name, message, author, changes) -> None:  # type: ignore[no-untyped-def]
    """Create a new image from a container's changes."""
    from dockyard.engine.commit import commit as commit_container
    from dockyard.engine.containers import Containers

    store = _store(ctx)
    container = Containers(store).get(container_name)
    image_id = commit_container(
        store, container, tag=name, message=message, author=author, changes=list(changes)
    )
    click.echo(image_id)


@click.group("image")
def image_group() -> None:
    """Manage images."""


@click.group("container")
def container_group() -> None:
    """Manage containers."""


def register(main: click.Group) -> None:
    for command in (import_, images, tag, rmi, inspect, history, save, load):
        main.add_command(command)
    for command in (run, ps, logs, stop, start, rm, commit):
        main.add_command(command)
    image_group.add_command(image_prune)
    for alias, command in (
        ("ls", images),
        ("rm", rmi),
        ("tag", tag),
        ("inspect", inspect),
        ("history", history),
        ("save", save),
        ("load", load),
        ("import", import_),
    ):
        image_group.add_command(command, alias)
    for alias, command in (
        ("run", run),
        ("ls", ps),
        ("logs", logs),
        ("stop", stop),
        ("start", start),
        ("rm", rm),
        ("commit", commit),
        ("inspect", inspect),
    ):
        container_group.add_command(command, alias)
    main.add_command(image_group)
    main.add_command(container_group)
