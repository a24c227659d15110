"""The registry's metadata tables. Content itself lives in the blob store."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("last_pushed", Float),
    # What the hub adds; a plain registry leaves the defaults.
    Column("is_private", Boolean, nullable=False, server_default=false()),
    Column("description", String(100), nullable=False, server_default=""),
    Column("readme", Text, nullable=False, server_default=""),
    Column("pull_count", BigInteger, nullable=False, server_default="0"),
    Column("is_automated", Boolean, nullable=False, server_default=false()),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used", Float, nullable=False),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(200), primary_key=True),
    Index("ix_repository_blobs_digest", "digest"),
)

manifests = Table(
    "manifests",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(200), primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("artifact_type", String(255)),
    Column("subject", String(200)),
    Column("annotations", Text),
    Column("created_at", Float, nullable=False),
    Index("ix_manifests_subject", "repository_id", "subject"),
    Index("ix_manifests_digest", "digest"),
)

manifest_references = Table(
    "manifest_references",
    metadata,
    Column("repository_id", Integer, primary_key=True),
    Column("manifest", String(200), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("is_manifest", Integer, nullable=False),
    Index("ix_manifest_references_target", "target"),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(128), primary_key=True),
    Column("digest", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_tags_digest", "repository_id", "digest"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
)


# The hub: accounts, organisations, access, stars.

namespaces = Table(
    "namespaces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "namespace_id",
        Integer,
        ForeignKey("namespaces.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("is_active", Boolean, nullable=False, server_default=false()),
    Column("confirm_token", String(64)),
    Column("created_at", Float, nullable=False),
)

organization_members = Table(
    "organization_members",
    metadata,
    Column(
        "organization_id",
        Integer,
        ForeignKey("namespaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("is_owner", Boolean, nullable=False, server_default=false()),
)

teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("namespaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    UniqueConstraint("organization_id", "name"),
)

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

team_permissions = Table(
    "team_permissions",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(8), nullable=False),
)

collaborators = Table(
    "collaborators",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(8), nullable=False),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("last_used_at", Float),
    Index("ix_access_tokens_user", "user_id"),
)

stars = Table(
    "stars",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)


# Automated builds: linked sources, build rules, the build queue and its logs.

build_sources = Table(
    "build_sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("url", String(2048), nullable=False),
    Column("auth_kind", String(8), nullable=False),
    Column("username", String(255)),
    Column("secret", Text),
    Column("public_key", Text),
    Column("webhook_secret", Text, nullable=False),
    Column("trigger_token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

build_rules = Table(
    "build_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "source_id", Integer, ForeignKey("build_sources.id", ondelete="CASCADE"), nullable=False
    ),
    Column("position", Integer, nullable=False),
    Column("source_type", String(8), nullable=False),
    Column("source_name", String(255), nullable=False),
    Column("docker_tag", String(512), nullable=False),
    Column("dockerfile", String(1024), nullable=False),
    Column("context", String(1024), nullable=False),
    Column("autobuild", Boolean, nullable=False),
    Column("cache", Boolean, nullable=False),
)

builds = Table(
    "builds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("namespace", String(255), nullable=False),
    Column("rule_id", Integer),
    Column("source_type", String(8), nullable=False),
    Column("source_ref", String(255), nullable=False),
    Column("commit", String(64)),
    Column("commit_message", Text),
    Column("docker_tags", String(1024), nullable=False),
    Column("dockerfile", String(1024), nullable=False),
    Column("context", String(1024), nullable=False),
    Column("cache", Boolean, nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("lease_token", String(64)),
    Column("lease_expires", Float),
    Column("worker", String(255)),
    Column("error", Text),
    Column("failed_step", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("ix_builds_status", "status", "created_at"),
    Index("ix_builds_repository", "repository_id", "created_at"),
)

build_logs = Table(
    "build_logs",
    metadata,
    Column("build_id", Integer, ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("text", Text, nullable=False),
)

repository_webhooks = Table(
    "repository_webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("created_at", Float, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "webhook_id",
        Integer,
        ForeignKey("repository_webhooks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_error", Text),
    Index("ix_webhook_deliveries_due", "status", "next_attempt"),
)
