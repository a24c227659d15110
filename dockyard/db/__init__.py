"""Metadata: SQLAlchemy Core tables, the engine, and Alembic migrations."""
