"""The registry auth challenge: anonymous, Basic, and Bearer tokens per the Docker token spec.

A registry answers 401 with `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (or
`Basic realm="…"`). For Bearer the client asks the realm for a token:

- GET realm?service=S&scope=A&scope=B with Basic credentials (or none: anonymous), adding
  offline_token=true&client_id=dockyard when it wants a refresh token (at login);
- POST realm (form: grant_type=refresh_token&refresh_token=…) when an identity token is
  stored, or grant_type=password&access_type=offline at login, falling back to GET if the
  server has no OAuth2 POST endpoint.

Tokens are cached per (realm, service, scopes) until they expire. A `registrytoken` from
config.json is a bearer token already: it is sent with every request, no challenge needed.
Nothing here ever puts a password in a message.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from dockyard.client.credentials import Credentials
from dockyard.client.errors import AuthError, TransportError

CLIENT_ID = "dockyard"
DEFAULT_TOKEN_LIFETIME = 60.0
EXPIRY_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> list[str]:
        scope = self.params.get("scope", "")
        return scope.split(" ") if scope else []


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in ' \t,="':
        i += 1
    return text[start:i], i


def _quoted(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    i += 1  # opening quote
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i


def parse_challenges(values: list[str] | str) -> list[Challenge]:
    """Every challenge in one or more WWW-Authenticate header values (RFC 7235 syntax)."""
    if isinstance(values, str):
        values = [values]
    challenges: list[Challenge] = []
    for text in values:
        i = 0
        current: Challenge | None = None
        while i < len(text):
            i = _skip_space(text, i)
            if i < len(text) and text[i] == ",":
                i += 1
                continue
            name, i = _token(text, i)
            if not name:
                i += 1
                continue
            j = _skip_space(text, i)
            if j < len(text) and text[j] == "=" and current is not None:
                j = _skip_space(text, j + 1)
                if j < len(text) and text[j] == '"':
                    value, i = _quoted(text, j)
                else:
                    value, i = _token(text, j)
                current.params[name.lower()] = value
            else:
                current = Challenge(name.lower(), {})
                challenges.append(current)
                i = j
    return challenges


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class Authenticator:
    """Turns challenges into Authorization headers for one registry host."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None,
        http: httpx.AsyncClient,
        *,
        want_refresh_token: bool = False,
    ) -> None:
        self.host = host
        self.credentials = credentials if credentials and not credentials.empty else None
        self.http = http
        self.want_refresh_token = want_refresh_token
        self.challenge: Challenge | None = None
        self.refresh_token: str | None = None  # issued by the token server (login stores it)
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}

    # --- the challenge ----------------------------------------------------------------

    def learn(self, response: httpx.Response) -> Challenge | None:
        """Remember the challenge of a 401 (Bearer preferred over Basic)."""
        found = parse_challenges(response.headers.get_list("www-authenticate"))
        for scheme in ("bearer", "basic"):
            for challenge in found:
                if challenge.scheme == scheme:
                    self.challenge = challenge
                    return challenge
        return None

    async def header(self, scopes: list[str], *, fresh: bool = False) -> str | None:
        """The Authorization header for a request needing `scopes`, or None (anonymous)."""
        if self.credentials and self.credentials.registry_token:
            return "Bearer " + self.credentials.registry_token
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_header(self.credentials) if self.credentials else None
        if challenge.scheme != "bearer":
            raise AuthError(f"{self.host} asks for unsupported authentication {challenge.scheme}")
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"{self.host} sent a Bearer challenge without a realm")
        service = challenge.params.get("service", "")
        key = (realm, service, tuple(sorted(set(scopes))))
        cached = self._tokens.get(key)
        if cached and not fresh and cached.expires_at > time.monotonic():
            return "Bearer " + cached.value
        token = await self._fetch_token(realm, service, list(key[2]))
        self._tokens[key] = token
        return "Bearer " + token.value

    async def after_unauthorized(self, response: httpx.Response, scopes: list[str]) -> list[str]:
        """Learn the challenge of a 401 and return the scopes to ask for on the single retry."""
        challenge = self.learn(response)
        if self.credentials and self.credentials.registry_token:
            raise AuthError(
                f"{self.host}: the registry token from config.json was refused"
                + (f" for {' '.join(scopes)}" if scopes else "")
                + _server_message(response)
            )
        if challenge is None:
            raise AuthError(f"{self.host} answered 401 without a challenge we understand")
        if challenge.scheme == "basic" and self.credentials is None:
            raise AuthError(f"{self.host}: authentication required (run `dockyard login`)")
        merged = list(scopes)
        for scope in challenge.scopes:
            if scope not in merged:
                merged.append(scope)
        return merged

    # --- token requests ---------------------------------------------------------------

    async def _fetch_token(self, realm: str, service: str, scopes: list[str]) -> _Token:
        creds = self.credentials
        try:
            if creds and creds.identity_token:
                return await self._post_token(
                    realm,
                    {"grant_type": "refresh_token", "refresh_token": creds.identity_token},
                    service,
                    scopes,
                )
            if creds and self.want_refresh_token:
                response = await self._post_token(
                    realm,
                    {
                        "grant_type": "password",
                        "username": creds.username,
                        "password": creds.password,
                        "access_type": "offline",
                    },
                    service,
                    scopes,
                    fallback=True,
                )
                if response is not None:
                    return response
            return await self._get_token(realm, service, scopes)
        except httpx.HTTPError as exc:
            raise TransportError(f"token server {realm}: {type(exc).__name__}: {exc}") from None

    async def _post_token(
        self,
        realm: str,
        form: dict[str, str],
        service: str,
        scopes: list[str],
        *,
        fallback: bool = False,
    ) -> Any:
        data = {**form, "service": service, "client_id": CLIENT_ID}
        if scopes:
            data["scope"] = " ".join(scopes)
        response = await self.http.post(realm, data=data)
        if fallback and response.status_code in (404, 405):
            return None
        return self._parse_token(response, realm)

    async def _get_token(self, realm: str, service: str, scopes: list[str]) -> _Token:
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", scope) for scope in scopes)
        if self.want_refresh_token and self.credentials:
            params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
        headers = {}
        if self.credentials and self.credentials.username:
            headers["Authorization"] = basic_header(self.credentials)
        response = await self.http.get(realm, params=params, headers=headers)
        return self._parse_token(response, realm)

    def _parse_token(self, response: httpx.Response, realm: str) -> _Token:
        if response.status_code in (401, 403):
            raise AuthError(
                f"{self.host}: unauthorized: incorrect username or password"
                + _server_message(response)
            )
        if response.status_code != 200:
            raise AuthError(
                f"token server {realm} answered {response.status_code}" + _server_message(response)
            )
        try:
            body = response.json()
        except ValueError:
            raise AuthError(f"token server {realm} sent a response that is not JSON") from None
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(f"token server {realm} sent no token")
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        refresh = body.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self.refresh_token = refresh
        return _Token(value, time.monotonic() + max(lifetime - EXPIRY_MARGIN, 1.0))


def _server_message(response: httpx.Response) -> str:
    """The registry's own error text (OCI `errors` or OAuth2 `error_description`), if any."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message") or errors[0].get("code")
        if message:
            return f" ({str(message)[:200]})"
    description = body.get("error_description") or body.get("details") or body.get("error")
    return f" ({str(description)[:200]})" if description else ""
