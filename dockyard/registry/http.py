"""The few ASGI primitives the registry's handlers need: bodies, responses, query strings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from dockyard.registry.errors import PayloadTooLarge, RegistryError, SizeInvalid

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


class Request:
    __slots__ = ("_headers", "_query", "method", "path", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self._headers: dict[str, str] | None = None
        self._query: dict[str, list[str]] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased header names; decoded only when a handler asks."""
        if self._headers is None:
            self._headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]
            }
        return self._headers

    def query(self, name: str) -> str | None:
        values = self.query_all(name)
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        if self._query is None:
            self._query = parse_qs(self.scope["query_string"].decode("latin-1"))
        return self._query.get(name, [])

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            return None
        if not value.isdigit():
            raise SizeInvalid("Content-Length must be a non-negative integer")
        return int(value)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises ClientDisconnected when it ends early."""
        expected = self.content_length
        received = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                yield chunk
            if not message.get("more_body", False):
                break
        if expected is not None and received != expected:
            raise SizeInvalid(f"received {received} bytes but Content-Length said {expected}")

    async def body(self, limit: int) -> bytes:
        length = self.content_length
        if length is not None and length > limit:
            raise PayloadTooLarge(f"body of {length} bytes exceeds the {limit} byte limit")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body exceeds the {limit} byte limit")
            parts.append(chunk)
        return b"".join(parts)


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def respond(
    send: Send,
    status: int,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    content_length: int | None = None,
) -> None:
    """Send a whole response; `content_length` overrides len(body) for HEAD answers."""
    raw = [API_VERSION, *encode_headers(headers or {})]
    length = len(body) if content_length is None else content_length
    raw.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, error: RegistryError, head: bool = False) -> None:
    body = error.body()
    headers = {"content-type": "application/json", **error.headers}
    await respond(send, error.status, headers, b"" if head else body, content_length=len(body))
