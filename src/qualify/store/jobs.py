"""Background jobs (model activation): their state lives in the store, so any worker can
answer `GET /api/jobs/{id}` whichever worker runs the job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from qualify.store.tables import jobs

__all__ = ["create_job", "finish_job", "get_job", "job_phase", "job_progress"]


def create_job(conn: Connection, kind: str, created_by: str, at: float) -> int:
    return int(
        conn.execute(
            insert(jobs)
            .values(kind=kind, status="running", created_by=created_by, created_at=at)
            .returning(jobs.c.id)
        ).scalar_one()
    )


def job_progress(conn: Connection, job_id: int, done: int, total: int | None) -> None:
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(done=done, total=total))


def job_phase(conn: Connection, job_id: int, phase: str) -> None:
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(phase=phase))


def finish_job(
    conn: Connection,
    job_id: int,
    at: float,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    status = "failed" if error is not None else "done"
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(status=status, phase=None, result=result, error=error, finished_at=at)
    )


def get_job(conn: Connection, job_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    return dict(row._mapping) if row is not None else None
