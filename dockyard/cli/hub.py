"""`dockyard user …`: the operator's way to set up a hub from a script."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def user() -> None:
    """Manage hub accounts."""


@user.command("create")
@click.argument("name")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="Administrators may do anything, e.g. push library/.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="The server's data dir.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True))
@click.option("--database-url")
def create(
    name: str,
    email: str,
    password_stdin: bool,
    admin: bool,
    config_file: Path | None,
    **options: object,
) -> None:
    """Create the account NAME, active at once (no email confirmation)."""
    import asyncio

    from dockyard.db.engine import migrate, open_engine
    from dockyard.hub.accounts import AccountError, Accounts
    from dockyard.server.config import load_settings

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = load_settings(config_file, options)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)

    async def run() -> None:
        engine = open_engine(settings.db_url)
        try:
            await Accounts(engine).create_user(name, email, password, admin=admin)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {'administrator' if admin else 'user'} {name}")


def register(main: click.Group) -> None:
    main.add_command(user)
