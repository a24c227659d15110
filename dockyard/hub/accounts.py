"""Users and organisations: sign-up, authentication, membership, teams, deletion."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dockyard.db import schema as s
from dockyard.db.engine import begin
from dockyard.hub.names import namespace_problem
from dockyard.hub.passwords import (
    DUMMY_HASH,
    hash_password,
    password_problem,
    verify_password,
)

ROLES = ("read", "write", "admin")
USER = "user"
ORGANIZATION = "org"


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str
    is_admin: bool
    is_active: bool


_USER_COLUMNS = (
    s.users.c.id,
    s.namespaces.c.name.label("username"),
    s.users.c.email,
    s.users.c.is_admin,
    s.users.c.is_active,
)


def _user_query():
    return select(*_USER_COLUMNS).join(s.namespaces, s.namespaces.c.id == s.users.c.namespace_id)


def _valid_email(email: str) -> bool:
    local, at, domain = email.partition("@")
    return bool(at and local and "." in domain and len(email) <= 320 and " " not in email)


VERIFIED_SECONDS = 300.0


class Accounts:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # sha256(stored hash, password) of recent successful logins: a client that logs in for
        # every token (docker does) costs one argon2 run per five minutes, not one per request.
        self._verified: dict[bytes, float] = {}

    async def _namespace(self, conn: AsyncConnection, name: str) -> tuple[int, str] | None:
        row = (
            await conn.execute(
                select(s.namespaces.c.id, s.namespaces.c.kind).where(s.namespaces.c.name == name)
            )
        ).first()
        return (row.id, row.kind) if row else None

    async def namespace_kind(self, name: str) -> str | None:
        async with self.engine.connect() as conn:
            found = await self._namespace(conn, name)
        return found[1] if found else None

    async def create_user(
        self,
        username: str,
        email: str,
        password: str,
        *,
        admin: bool = False,
        active: bool = True,
    ) -> tuple[User, str | None]:
        """The new user, and the email confirmation token when it starts inactive."""
        problem = namespace_problem(username)
        if problem:
            raise AccountError(f"username {problem}")
        if not _valid_email(email):
            raise AccountError("email address is not valid")
        problem = password_problem(password)
        if problem:
            raise AccountError(f"password {problem}")
        hashed = await hash_password(password)
        confirm = None if active else secrets.token_urlsafe(24)
        now = time.time()
        try:
            async with begin(self.engine) as conn:
                namespace_id = (
                    await conn.execute(
                        s.namespaces.insert().values(name=username, kind=USER, created_at=now)
                    )
                ).inserted_primary_key[0]
                await conn.execute(
                    s.users.insert().values(
                        namespace_id=namespace_id,
                        email=email.lower(),
                        password_hash=hashed,
                        is_admin=admin,
                        is_active=active,
                        confirm_token=confirm,
                        created_at=now,
                    )
                )
        except IntegrityError:
            raise AccountError("that username or email is already taken") from None
        user = await self.user_by_name(username)
        assert user is not None
        return user, confirm

    async def user_by_name(self, username: str) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_user_query().where(s.namespaces.c.name == username))).first()
        return User(*row) if row else None

    async def user_by_id(self, user_id: int) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_user_query().where(s.users.c.id == user_id))).first()
        return User(*row) if row else None

    async def authenticate(self, username: str, password: str) -> User | None:
        """The active user with that password; the same work is done for unknown names."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*_USER_COLUMNS, s.users.c.password_hash)
                    .join(s.namespaces, s.namespaces.c.id == s.users.c.namespace_id)
                    .where(s.namespaces.c.name == username)
                )
            ).first()
        if row is None:
            await verify_password(DUMMY_HASH, password)
            return None
        if not row.is_active or not await self._verify(row.password_hash, password):
            return None
        return User(row.id, row.username, row.email, row.is_admin, row.is_active)

    async def _verify(self, hashed: str, password: str) -> bool:
        key = hashlib.sha256(f"{hashed}\0{password}".encode()).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        if not await verify_password(hashed, password):
            return False
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = now + VERIFIED_SECONDS
        return True

    async def confirm_email(self, token: str) -> User | None:
        async with begin(self.engine) as conn:
            row = (
                await conn.execute(select(s.users.c.id).where(s.users.c.confirm_token == token))
            ).first()
            if row is None:
                return None
            await conn.execute(
                update(s.users)
                .where(s.users.c.id == row.id)
                .values(is_active=True, confirm_token=None)
            )
        return await self.user_by_id(row.id)

    async def change_password(self, user: User, old: str, new: str) -> None:
        if await self.authenticate(user.username, old) is None:
            raise AccountError("the current password is wrong")
        problem = password_problem(new)
        if problem:
            raise AccountError(f"new password {problem}")
        hashed = await hash_password(new)
        async with begin(self.engine) as conn:
            await conn.execute(
                update(s.users).where(s.users.c.id == user.id).values(password_hash=hashed)
            )

    async def delete_user(self, user: User) -> None:
        """Remove the account, its tokens, and the repositories of its namespace."""
        async with begin(self.engine) as conn:
            await _delete_namespace_repositories(conn, user.username)
            await conn.execute(delete(s.access_tokens).where(s.access_tokens.c.user_id == user.id))
            await conn.execute(delete(s.users).where(s.users.c.id == user.id))
            await conn.execute(delete(s.namespaces).where(s.namespaces.c.name == user.username))

    async def create_organization(self, name: str, owner: User) -> None:
        problem = namespace_problem(name)
        if problem:
            raise AccountError(f"organisation name {problem}")
        try:
            async with begin(self.engine) as conn:
                org_id = (
                    await conn.execute(
                        s.namespaces.insert().values(
                            name=name, kind=ORGANIZATION, created_at=time.time()
                        )
                    )
                ).inserted_primary_key[0]
                await conn.execute(
                    s.organization_members.insert().values(
                        organization_id=org_id, user_id=owner.id, is_owner=True
                    )
                )
        except IntegrityError:
            raise AccountError("that name is already taken") from None

    async def _organization_id(self, conn: AsyncConnection, name: str) -> int:
        found = await self._namespace(conn, name)
        if found is None or found[1] != ORGANIZATION:
            raise AccountError(f"no organisation named {name!r}")
        return found[0]

    async def add_member(self, organization: str, user: User, *, owner: bool = False) -> None:
        async with begin(self.engine) as conn:
            org_id = await self._organization_id(conn, organization)
            await conn.execute(
                delete(s.organization_members).where(
                    s.organization_members.c.organization_id == org_id,
                    s.organization_members.c.user_id == user.id,
                )
            )
            await conn.execute(
                s.organization_members.insert().values(
                    organization_id=org_id, user_id=user.id, is_owner=owner
                )
            )

    async def membership(self, organization: str, user: User) -> str | None:
        """'owner', 'member', or None."""
        query = (
            select(s.organization_members.c.is_owner)
            .join(s.namespaces, s.namespaces.c.id == s.organization_members.c.organization_id)
            .where(s.namespaces.c.name == organization, s.organization_members.c.user_id == user.id)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return "owner" if row.is_owner else "member"

    async def create_team(self, organization: str, name: str) -> int:
        if not name or len(name) > 100:
            raise AccountError("team name must be 1 to 100 characters")
        try:
            async with begin(self.engine) as conn:
                org_id = await self._organization_id(conn, organization)
                result = await conn.execute(
                    s.teams.insert().values(organization_id=org_id, name=name)
                )
                return result.inserted_primary_key[0]
        except IntegrityError:
            raise AccountError(f"team {name!r} already exists") from None

    async def _team_id(self, conn: AsyncConnection, organization: str, team: str) -> int:
        org_id = await self._organization_id(conn, organization)
        row = (
            await conn.execute(
                select(s.teams.c.id).where(
                    s.teams.c.organization_id == org_id, s.teams.c.name == team
                )
            )
        ).first()
        if row is None:
            raise AccountError(f"no team {team!r} in {organization}")
        return row.id

    async def add_team_member(self, organization: str, team: str, user: User) -> None:
        async with begin(self.engine) as conn:
            team_id = await self._team_id(conn, organization, team)
            members = s.organization_members
            org_id = await self._organization_id(conn, organization)
            is_member = (
                await conn.execute(
                    select(members.c.user_id).where(
                        members.c.organization_id == org_id, members.c.user_id == user.id
                    )
                )
            ).first()
            if is_member is None:
                await conn.execute(members.insert().values(organization_id=org_id, user_id=user.id))
            await conn.execute(
                delete(s.team_members).where(
                    s.team_members.c.team_id == team_id, s.team_members.c.user_id == user.id
                )
            )
            await conn.execute(s.team_members.insert().values(team_id=team_id, user_id=user.id))

    async def set_team_permission(
        self, organization: str, team: str, repository_id: int, role: str | None
    ) -> None:
        if role is not None and role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        async with begin(self.engine) as conn:
            team_id = await self._team_id(conn, organization, team)
            where = and_(
                s.team_permissions.c.team_id == team_id,
                s.team_permissions.c.repository_id == repository_id,
            )
            await conn.execute(delete(s.team_permissions).where(where))
            if role is not None:
                await conn.execute(
                    s.team_permissions.insert().values(
                        team_id=team_id, repository_id=repository_id, role=role
                    )
                )

    async def teams(self, organization: str) -> list[dict[str, object]]:
        async with self.engine.connect() as conn:
            org_id = await self._organization_id(conn, organization)
            rows = (
                await conn.execute(
                    select(s.teams.c.id, s.teams.c.name)
                    .where(s.teams.c.organization_id == org_id)
                    .order_by(s.teams.c.name)
                )
            ).all()
        return [{"id": r.id, "name": r.name} for r in rows]

    async def team_roles(self, organization: str, repository_id: int) -> dict[str, str]:
        """Every team of `organization` with a role on the repository: {team name: role}."""
        query = (
            select(s.teams.c.name, s.team_permissions.c.role)
            .join(s.team_permissions, s.team_permissions.c.team_id == s.teams.c.id)
            .join(s.namespaces, s.namespaces.c.id == s.teams.c.organization_id)
            .where(
                s.namespaces.c.name == organization,
                s.team_permissions.c.repository_id == repository_id,
            )
        )
        async with self.engine.connect() as conn:
            return {row.name: row.role for row in await conn.execute(query)}


async def _delete_namespace_repositories(conn: AsyncConnection, namespace: str) -> None:
    ids = list(
        (
            await conn.execute(
                select(s.repositories.c.id).where(s.repositories.c.name.like(f"{namespace}/%"))
            )
        ).scalars()
    )
    await delete_repository_rows(conn, ids)


async def delete_repository_rows(conn: AsyncConnection, ids: list[int]) -> None:
    """Remove repositories and everything that hangs off them; blobs go at the next gc."""
    if not ids:
        return
    for table in (
        s.tags,
        s.manifests,
        s.manifest_references,
        s.repository_blobs,
        s.team_permissions,
        s.collaborators,
        s.stars,
    ):
        await conn.execute(delete(table).where(table.c.repository_id.in_(ids)))
    await conn.execute(delete(s.repositories).where(s.repositories.c.id.in_(ids)))
