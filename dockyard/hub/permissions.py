"""What a person (or one of their tokens) may do with a repository."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.db import schema as s
from dockyard.hub.accounts import ORGANIZATION, User
from dockyard.hub.names import OFFICIAL, canonical_repository, namespace_of

PULL, PUSH, DELETE = "pull", "push", "delete"
ALL = frozenset({PULL, PUSH, DELETE})
ROLE_ACTIONS = {
    "read": frozenset({PULL}),
    "write": frozenset({PULL, PUSH}),
    "admin": ALL,
}
SCOPE_ACTIONS = {"read": frozenset({PULL}), "write": frozenset({PULL, PUSH}), "delete": ALL}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: a user (None for anonymous), limited to a token's scopes when one was used."""

    user: User | None
    scopes: frozenset[str] | None = None

    @property
    def name(self) -> str:
        return self.user.username if self.user else ""

    def limit(self, actions: frozenset[str]) -> frozenset[str]:
        if self.scopes is None:
            return actions
        allowed: frozenset[str] = frozenset()
        for scope in self.scopes:
            allowed |= SCOPE_ACTIONS.get(scope, frozenset())
        return actions & allowed


ANONYMOUS = Principal(None)


class Permissions:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def actions(self, principal: Principal, repository: str) -> frozenset[str]:
        name = canonical_repository(repository)
        user = principal.user
        if user is not None and user.is_admin:
            return principal.limit(ALL)
        namespace = namespace_of(name)
        async with self.engine.connect() as conn:
            repo = (
                await conn.execute(
                    select(s.repositories.c.id, s.repositories.c.is_private).where(
                        s.repositories.c.name == name
                    )
                )
            ).first()
            granted: frozenset[str] = frozenset()
            if repo is not None and not repo.is_private:
                granted |= {PULL}
            if user is None:
                return principal.limit(granted)
            if namespace == user.username:
                return principal.limit(ALL)
            if namespace == OFFICIAL:
                return principal.limit(granted)
            membership = (
                await conn.execute(
                    select(s.organization_members.c.is_owner)
                    .join(
                        s.namespaces,
                        s.namespaces.c.id == s.organization_members.c.organization_id,
                    )
                    .where(
                        s.namespaces.c.name == namespace,
                        s.namespaces.c.kind == ORGANIZATION,
                        s.organization_members.c.user_id == user.id,
                    )
                )
            ).first()
            if membership is not None and membership.is_owner:
                return principal.limit(ALL)
            if repo is None:
                return principal.limit(granted)
            roles = list(
                (
                    await conn.execute(
                        select(s.collaborators.c.role).where(
                            s.collaborators.c.repository_id == repo.id,
                            s.collaborators.c.user_id == user.id,
                        )
                    )
                ).scalars()
            )
            if membership is not None:
                roles += list(
                    (
                        await conn.execute(
                            select(s.team_permissions.c.role)
                            .join(
                                s.team_members,
                                s.team_members.c.team_id == s.team_permissions.c.team_id,
                            )
                            .where(
                                s.team_permissions.c.repository_id == repo.id,
                                s.team_members.c.user_id == user.id,
                            )
                        )
                    ).scalars()
                )
        for role in roles:
            granted |= ROLE_ACTIONS.get(role, frozenset())
        return principal.limit(granted)

    async def can_read(self, principal: Principal, repository: str) -> bool:
        return PULL in await self.actions(principal, repository)

    async def can_admin(self, principal: Principal, repository: str) -> bool:
        return DELETE in await self.actions(principal, repository)
