"""The registry's authorizer in hub mode: Bearer JWTs from the hub's token service."""

from __future__ import annotations

from dockyard.hub.context import Hub
from dockyard.hub.names import canonical_repository
from dockyard.hub.permissions import ANONYMOUS, Principal
from dockyard.registry.auth import Scope
from dockyard.registry.errors import Unauthorized
from dockyard.registry.http import Request


class TokenAccess:
    def __init__(self, hub: Hub, service: str) -> None:
        self.hub = hub
        self.service = service

    def _realm(self, request: Request) -> str:
        if self.hub.public_url:
            return self.hub.public_url.rstrip("/") + "/token"
        host = request.headers.get("host", "localhost")
        scheme = request.headers.get("x-forwarded-proto", request.scope.get("scheme", "http"))
        return f"{scheme}://{host}/token"

    def _challenge(self, request: Request, scope: Scope | None, error: str = "") -> Unauthorized:
        value = f'Bearer realm="{self._realm(request)}",service="{self.service}"'
        if scope is not None:
            if scope.repository is None:
                value += ',scope="registry:catalog:*"'
            else:
                value += f',scope="repository:{scope.repository}:{",".join(sorted(scope.actions))}"'
        if error:
            value += f',error="{error}"'
        return Unauthorized(
            "authentication required" if not error else "the token does not allow this",
            headers={"www-authenticate": value},
        )

    async def authorize(self, request: Request, scope: Scope | None) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith(("Bearer ", "bearer ")):
            raise self._challenge(request, scope)
        claims = self.hub.signer.verify(header[7:].strip())
        if claims is None:
            raise self._challenge(request, scope, "invalid_token")
        if scope is None:
            return claims["sub"]
        for grant in claims.get("access", []):
            if not isinstance(grant, dict):
                continue
            if scope.repository is None:
                if grant.get("type") == "registry" and grant.get("name") == "catalog":
                    return claims["sub"]
                continue
            if (
                grant.get("type") == "repository"
                and isinstance(grant.get("name"), str)
                and canonical_repository(grant["name"]) == scope.repository
                and scope.actions <= set(grant.get("actions", ()))
            ):
                return claims["sub"]
        raise self._challenge(request, scope, "insufficient_scope")

    async def visible(self, request: Request, names: list[str]) -> list[str]:
        header = request.headers.get("authorization", "")
        claims = self.hub.signer.verify(header[7:].strip()) if len(header) > 7 else None
        principal = ANONYMOUS
        if claims is not None and claims.get("sub"):
            user = await self.hub.accounts.user_by_name(claims["sub"])
            principal = Principal(user) if user else ANONYMOUS
        return [n for n in names if await self.hub.permissions.can_read(principal, n)]
