"""Model versions: every activated model is stored with its YAML text and checksum."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection, insert, select, update

from qualify.errors import NoActiveModel
from qualify.model import ScoringModel, load_model
from qualify.store.tables import model_versions

__all__ = ["ModelVersion", "active_version", "list_versions", "save_version", "set_active"]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    id: int
    name: str
    version: str
    checksum: str
    created_at: float
    created_by: str
    activated_at: float | None
    active: bool


def save_version(conn: Connection, model: ScoringModel, created_by: str, at: float) -> int:
    """Store a model's text; the same text again reuses its row."""
    existing = conn.execute(
        select(model_versions.c.id).where(model_versions.c.checksum == model.checksum)
    ).scalar()
    if existing is not None:
        return int(existing)
    result = conn.execute(
        insert(model_versions).values(
            name=model.name,
            version=model.version,
            checksum=model.checksum,
            source=model.source,
            created_at=at,
            created_by=created_by,
            active=False,
        )
    )
    return int(result.inserted_primary_key[0])


def set_active(conn: Connection, version_id: int, at: float) -> None:
    conn.execute(update(model_versions).values(active=False))
    conn.execute(
        update(model_versions)
        .where(model_versions.c.id == version_id)
        .values(active=True, activated_at=at)
    )


def active_version_id(conn: Connection) -> int | None:
    """Just the active version's id: a cheap check whether the model changed."""
    found = conn.execute(
        select(model_versions.c.id).where(model_versions.c.active.is_(True))
    ).scalar()
    return int(found) if found is not None else None


def active_version(conn: Connection) -> tuple[int, ScoringModel]:
    row = conn.execute(
        select(model_versions.c.id, model_versions.c.source, model_versions.c.name).where(
            model_versions.c.active.is_(True)
        )
    ).first()
    if row is None:
        raise NoActiveModel()
    return int(row.id), _parsed(row.source, row.name)


@lru_cache(maxsize=8)
def _parsed(source: str, name: str) -> ScoringModel:
    """Stored models were validated when stored; parse each text once per process."""
    return load_model(source, f"<stored model {name}>")


def list_versions(conn: Connection) -> list[ModelVersion]:
    rows = conn.execute(select(model_versions).order_by(model_versions.c.id))
    return [
        ModelVersion(
            r.id,
            r.name,
            r.version,
            r.checksum,
            r.created_at,
            r.created_by,
            r.activated_at,
            bool(r.active),
        )
        for r in rows
    ]
