"""Everything the hub's handlers share, and how a request proves who it is."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from dockyard.hub.access_tokens import PERSONAL, AccessTokens, looks_like_token
from dockyard.hub.accounts import Accounts, User
from dockyard.hub.mail import Mailer
from dockyard.hub.permissions import ANONYMOUS, Permissions, Principal
from dockyard.hub.ratelimit import LoginLimiter
from dockyard.hub.repositories import PullCounter, Repositories
from dockyard.hub.signing import TokenSigner
from dockyard.registry.context import Registry


class BadCredentials(Exception):
    """Credentials were offered and are wrong."""


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(retry_after) + 1} seconds")
        self.retry_after = retry_after


@dataclass
class Hub:
    registry: Registry
    accounts: Accounts
    tokens: AccessTokens
    permissions: Permissions
    repositories: Repositories
    signer: TokenSigner
    pulls: PullCounter
    public_url: str = ""
    open_signup: bool = True
    mailer: Mailer | None = None
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    @property
    def email_confirmation(self) -> bool:
        """New accounts wait for their address to be confirmed only when mail can be sent."""
        return self.mailer is not None

    async def send_confirmation(self, user: User, token: str) -> None:
        assert self.mailer is not None
        link = f"{self.public_url.rstrip('/')}/confirm/{token}"
        await self.mailer.send(
            user.email,
            "Confirm your Dockyard account",
            f"Hello {user.username},\n\nconfirm your address to activate your account:\n{link}\n",
        )

    async def login(self, username: str, secret: str, client: str) -> Principal:
        """A password or an access token, checked under the failed-login limit."""
        keys = (f"user:{username}", f"client:{client}")
        wait = self.limiter.retry_after(*keys)
        if wait:
            raise RateLimited(wait)
        if looks_like_token(secret):
            found = await self.tokens.verify(secret, kind=PERSONAL)
            if found is not None and found[0].username == username:
                self.limiter.succeeded(*keys)
                return Principal(found[0], found[1])
        else:
            user = await self.accounts.authenticate(username, secret)
            if user is not None:
                self.limiter.succeeded(*keys)
                return Principal(user)
        self.limiter.failed(*keys)
        raise BadCredentials("invalid username, password or token")

    async def principal_from_header(self, header: str | None, client: str) -> Principal:
        """ANONYMOUS without credentials; raises BadCredentials for wrong ones."""
        if not header:
            return ANONYMOUS
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise BadCredentials("malformed Basic credentials") from None
            username, sep, secret = decoded.partition(":")
            if not sep:
                raise BadCredentials("malformed Basic credentials")
            return await self.login(username, secret, client)
        if scheme.lower() == "bearer":
            # Only personal access tokens: a registry JWT grants registry actions, not the API.
            found = await self.tokens.verify(value.strip(), kind=PERSONAL)
            if found is not None:
                return Principal(found[0], found[1])
            raise BadCredentials("invalid or expired token")
        raise BadCredentials(f"unsupported authorization scheme {scheme!r}")
