"""Alembic environment: runs migrations on the URL Dockyard passes in."""

from alembic import context
from sqlalchemy import create_engine

from dockyard.db.schema import metadata

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
