"""Who is calling, and what their key's role lets them do.

Segment's SDKs put the write key in one of three places: HTTP Basic (the key as user name,
empty password), `Authorization: Bearer`, or `writeKey` in the JSON body. Tokens for the
lead and model API use Bearer (or Basic). Keys are looked up by hash and remembered for a few
seconds, so a busy ingestion endpoint does not query the store on every request.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable

from fastapi import Request
from sqlalchemy import Engine

from qualify.api.problems import ApiProblem
from qualify.store.keys import ApiKey, find_key

__all__ = ["PERMISSIONS", "KeyCache", "secret_from_headers"]

# what each role may do
PERMISSIONS: dict[str, frozenset[str]] = {
    "write": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "sales": frozenset({"read", "feedback"}),
    "marketing": frozenset({"read", "models", "reports"}),
    "admin": frozenset({"read", "feedback", "models", "reports", "keys", "ingest"}),
}


def secret_from_headers(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return value.strip()
    if scheme == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApiProblem(
                401, "unauthorized", "the Basic credentials are not valid base64"
            ) from None
        user = decoded.partition(":")[0]
        return user or None
    return None


class KeyCache:
    """Keys by secret, remembered for `ttl` seconds (a revoked key stops within that)."""

    def __init__(
        self, engine: Engine, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.engine, self.ttl, self.clock = engine, ttl, clock
        self.known: dict[str, tuple[ApiKey | None, float]] = {}

    def lookup(self, secret: str) -> ApiKey | None:
        now = self.clock()
        found = self.known.get(secret)
        if found is not None and found[1] > now:
            return found[0]
        with self.engine.connect() as conn:
            key = find_key(conn, secret)
        if len(self.known) > 10_000:
            self.known.clear()
        self.known[secret] = (key, now + self.ttl)
        return key

    def authorize(self, secret: str | None, permission: str) -> ApiKey:
        """The caller's key, if it may do `permission`; else 401 (no or unknown key) or 403."""
        if not secret:
            raise ApiProblem(
                401,
                "unauthorized",
                "no key: send it as `Authorization: Bearer KEY`, as the Basic user name, "
                "or (ingestion) as `writeKey` in the body",
            )
        key = self.lookup(secret)
        if key is None:
            raise ApiProblem(401, "unauthorized", "unknown or revoked key")
        if permission not in PERMISSIONS.get(key.role, frozenset()):
            raise ApiProblem(
                403,
                "forbidden",
                f"a `{key.role}` key may not do this (it needs the `{permission}` permission)",
            )
        return key
