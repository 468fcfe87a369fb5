"""Storage adapters: SQLAlchemy tables, Alembic migrations and repositories."""

from __future__ import annotations

from qualify.store.database import DEFAULT_URL, database_url, open_engine

__all__ = ["DEFAULT_URL", "database_url", "open_engine"]
