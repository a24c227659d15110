"""The hub's ES256 key: it signs registry tokens (JWTs) and is published as a certificate so
any registry that trusts the hub (CNCF distribution too) can verify them."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ISSUER = "dockyard"
TOKEN_SECONDS = 300


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key id docker's libtrust derives from a public key, which distribution matches."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class TokenSigner:
    def __init__(self, directory: Path, service: str) -> None:
        self.service = service
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / "token-signing.key"
        self.certificate_path = directory / "token-signing.crt"
        if not key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            _write_private(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        self._key = loaded
        self.public_key = loaded.public_key()
        self.key_id = libtrust_key_id(self.public_key)
        if not self.certificate_path.exists():
            self.certificate_path.write_bytes(self._certificate())
        self._verified: dict[str, dict[str, Any]] = {}

    def _certificate(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard token signer")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, subject: str, access: list[dict[str, Any]], seconds: int = TOKEN_SECONDS
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 1,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.key_id})

    def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims if this hub signed it for this service and it is current."""
        claims = self._verified.get(token)
        now = time.time()
        if claims is not None:
            if claims["exp"] > now:
                return claims
            del self._verified[token]
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                audience=self.service,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get("access", []), list):
            return None
        if len(self._verified) > 50_000:
            self._verified.clear()
        self._verified[token] = claims
        return claims
