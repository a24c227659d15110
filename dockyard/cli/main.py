"""`dockyard …`: each command imports what it needs only when it runs, so the CLI starts fast."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dockyard")
@click.option(
    "--root",
    envvar="DOCKYARD_ROOT",
    type=click.Path(file_okay=False, path_type=Path),
    help="The local image and container store. [default: /var/lib/dockyard/engine for root, "
    "else ~/.local/share/dockyard/engine]",
)
@click.pass_context
def main(ctx: click.Context, root: Path | None) -> None:
    """Dockyard: a self-hosted container image hub and registry."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@main.command()
@click.option("--addr", help="Address to listen on, HOST:PORT. [default: 127.0.0.1:5000]")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Where blobs and the SQLite database live. [default: /var/lib/dockyard for "
    "root, else ~/.local/share/dockyard]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, exists=True),
    help="A TOML file with any of these settings (keys as the long option names).",
)
@click.option(
    "--database-url",
    help="SQLAlchemy URL of the metadata database. [default: SQLite in the data dir]",
)
@click.option(
    "--auth",
    type=click.Choice(["hub", "none", "htpasswd"]),
    help="hub: accounts and registry tokens, anonymous pulls of public repositories; "
    "none: an open private registry; htpasswd: Basic auth from a file. [default: hub]",
)
@click.option(
    "--htpasswd",
    type=click.Path(path_type=Path, exists=True),
    help="htpasswd file of bcrypt entries (htpasswd -B) for --auth htpasswd.",
)
@click.option("--workers", type=int, help="Server processes. [default: 1]")
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "granian"]),
    help="HTTP server implementation. [default: uvicorn]",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[default: info]"
)
@click.option("--access-log/--no-access-log", default=None, help="Log every request.")
@click.option(
    "--public-url",
    help="The hub's URL as clients see it (token realm, emails). "
    "[default: from each request's Host]",
)
@click.option("--token-service", help="The service name in registry tokens. [default: dockyard]")
@click.option(
    "--default-private/--default-public",
    default=None,
    help="Visibility of repositories created by a push. [default: public]",
)
@click.option(
    "--open-signup/--closed-signup",
    default=None,
    help="Whether anyone may sign up. [default: open]",
)
@click.option(
    "--smtp-host",
    help="SMTP server for email confirmation; without one, accounts are active at sign-up.",
)
@click.option("--smtp-port", type=int, help="[default: 25]")
@click.option("--smtp-from", help="Sender address of the hub's emails.")
@click.option(
    "--build-workers",
    type=int,
    help="Automated-build workers in this process (0: only remote `dockyard worker`s). "
    "[default: 1]",
)
@click.option(
    "--build-namespace-limit", type=int, help="Builds running at once per namespace. [default: 2]"
)
@click.option(
    "--build-lease-seconds",
    type=float,
    help="How long a silent worker keeps its build before another may run it. [default: 30]",
)
@click.option(
    "--worker-token",
    help="The token remote `dockyard worker --token` processes present. [default: none, "
    "remote workers refused]",
)
@click.option(
    "--allow-local-sources/--no-local-sources",
    default=None,
    help="Let admins link git repositories by a local path on this machine. [default: no]",
)
def serve(config_file: Path | None, **options: object) -> None:
    """Run the registry server.

    Every setting can also come from the TOML file given with --config, or from an environment
    variable DOCKYARD_<SETTING> (for example DOCKYARD_DATA_DIR, DOCKYARD_AUTH); flags win over
    variables, variables over the file.
    """
    from dockyard.server.config import load_settings
    from dockyard.server.logs import configure
    from dockyard.server.run import serve as run_server

    try:
        settings = load_settings(config_file, options)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    configure(settings.log_level)
    run_server(settings)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="The server's data dir.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True))
@click.option("--database-url")
@click.option("--delete", is_flag=True, help="Really delete; without it, only report.")
@click.option(
    "--delete-untagged", is_flag=True, help="Also remove manifests no tag or index reaches."
)
@click.option(
    "--grace",
    "gc_grace_seconds",
    type=float,
    help="Spare blobs used more recently than this many seconds. [default: 3600]",
)
def gc(config_file: Path | None, delete: bool, delete_untagged: bool, **options: object) -> None:
    """Garbage-collect blobs no manifest references (a dry run unless --delete).

    Safe while the server runs and clients push: recently uploaded blobs are spared, and
    content becomes visible only under a lock this command takes while it deletes.
    """
    import asyncio

    from dockyard.db.engine import migrate
    from dockyard.registry.gc import collect
    from dockyard.server.app import open_registry
    from dockyard.server.config import load_settings
    from dockyard.server.logs import configure

    settings = load_settings(config_file, options)
    configure(settings.log_level)
    migrate(settings.db_url)

    async def run() -> None:
        registry = open_registry(settings)
        try:
            report = await collect(
                registry,
                dry_run=not delete,
                delete_untagged=delete_untagged,
                grace=settings.gc_grace_seconds,
                upload_ttl=settings.upload_ttl_seconds,
            )
        finally:
            await registry.meta.engine.dispose()
        verb = "would free" if not delete else "freed"
        click.echo(
            f"{verb} {report.blob_count} blobs ({report.blob_bytes} bytes), "
            f"{report.manifest_count} untagged manifests, {report.upload_count} stale uploads"
        )
        for line in report.lines:
            click.echo(f"  {line}")

    asyncio.run(run())


def _register_engine_commands() -> None:
    from dockyard.cli.engine import register

    register(main)


_register_engine_commands()


def _register_build_command() -> None:
    from dockyard.cli.build import register

    register(main)


_register_build_command()


def _register_distribution_commands() -> None:
    from dockyard.cli.distribution import register

    register(main)


_register_distribution_commands()


def _register_hub_commands() -> None:
    from dockyard.cli.hub import register

    register(main)


_register_hub_commands()


def _register_build_service_commands() -> None:
    from dockyard.cli.builds import register

    register(main)


_register_build_service_commands()
