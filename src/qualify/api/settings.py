"""The service's settings: parsed once from the environment into a frozen object.

`qualify serve` passes its options through the environment so that every worker process
(uvicorn starts them by importing the app) reads the same settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from qualify.errors import QualifyError

__all__ = ["MAX_BODY", "MAX_MESSAGE", "ServiceSettings"]

MAX_BODY = 4 * 1024 * 1024
MAX_MESSAGE = 32 * 1024


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    database_url: str | None = None  # None: $QUALIFY_DATABASE_URL, else ./qualify.db
    max_body_bytes: int = MAX_BODY  # a request body, after gzip
    max_message_bytes: int = MAX_MESSAGE  # one message, as Segment limits it
    rate_limit: float = 0.0  # messages a second per write key (0: no limit)
    group_limit: int = 5000  # messages committed together at most
    schedule_every: float = 30.0  # seconds between scheduler rounds (SLA); 0: no scheduler
    webhook_base_delay: float = 5.0  # first retry after about this many seconds, then doubling
    webhook_max_attempts: int = 10  # a delivery failing this often is dead until replayed

    @classmethod
    def from_env(cls) -> ServiceSettings:
        def number(name: str, default: float) -> float:
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError:
                raise QualifyError(f"${name} must be a number, not {raw!r}") from None

        return cls(
            database_url=os.environ.get("QUALIFY_DATABASE_URL") or None,
            max_body_bytes=int(number("QUALIFY_MAX_BODY_BYTES", MAX_BODY)),
            max_message_bytes=int(number("QUALIFY_MAX_MESSAGE_BYTES", MAX_MESSAGE)),
            rate_limit=number("QUALIFY_RATE_LIMIT", 0.0),
            schedule_every=number("QUALIFY_SCHEDULE_EVERY", 30.0),
            webhook_base_delay=number("QUALIFY_WEBHOOK_BASE_DELAY", 5.0),
            webhook_max_attempts=int(number("QUALIFY_WEBHOOK_MAX_ATTEMPTS", 10)),
        )
