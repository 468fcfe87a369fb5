"""Write keys and API tokens: created once, shown once, stored only as hashes.

A write key (role `write`) may only send messages; tokens carry one of the roles `read`,
`sales` (leads and feedback), `marketing` (models and reports) or `admin` (everything). The
secret is 32 random bytes; a SHA-256 of it is what the store keeps — a fast hash is enough for
a random secret of this size (there is nothing to guess), and every request can be checked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from qualify.errors import QualifyError
from qualify.store.tables import api_keys

__all__ = ["ROLES", "ApiKey", "create_key", "find_key", "hash_secret", "list_keys", "revoke_key"]

ROLES = ("write", "read", "sales", "marketing", "admin")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    role: str
    prefix: str  # the first characters of the secret, to tell keys apart in lists
    created_at: float
    revoked_at: float | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(conn: Connection, role: str, name: str, at: float) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is not kept and cannot be shown again."""
    if role not in ROLES:
        raise QualifyError(f"unknown role `{role}`: use one of {', '.join(ROLES)}")
    secret = f"qk_{role}_{secrets.token_urlsafe(32)}"
    prefix = secret[: len(role) + 8]
    key_id = conn.execute(
        insert(api_keys)
        .values(name=name, role=role, prefix=prefix, key_hash=hash_secret(secret), created_at=at)
        .returning(api_keys.c.id)
    ).scalar_one()
    return ApiKey(key_id, name, role, prefix, at, None), secret


def find_key(conn: Connection, secret: str) -> ApiKey | None:
    """The live key with this secret, if any."""
    row = conn.execute(
        select(api_keys).where(
            api_keys.c.key_hash == hash_secret(secret), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    return _key(row) if row is not None else None


def list_keys(conn: Connection) -> list[ApiKey]:
    return [_key(row) for row in conn.execute(select(api_keys).order_by(api_keys.c.id))]


def revoke_key(conn: Connection, key_id: int, at: float) -> bool:
    """Revoke a key; False when there is no live key with that id."""
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1


def _key(row: object) -> ApiKey:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKey(m["id"], m["name"], m["role"], m["prefix"], m["created_at"], m["revoked_at"])
