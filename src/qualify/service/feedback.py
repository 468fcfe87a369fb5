"""Sales feedback: accept, reject, disqualify, opportunity, won, lost — recorded transitions."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine

from qualify.core.lifecycle import Stage, StageChanged, TransitionContext, take_action
from qualify.errors import NoActiveModel
from qualify.service.routing import record_late_answer
from qualify.service.webhooks import Outbox, emit_transition, lead_snapshot
from qualify.store import repository as repo
from qualify.store.database import writing
from qualify.store.tables import leads, transitions
from qualify.store.versions import active_version

__all__ = ["record_action"]


def record_action(
    engine: Engine,
    lead_id: str,
    action: str,
    *,
    actor: str,
    reason: str = "",
    details: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> StageChanged:
    """Take a sales action on a lead, checked against the lifecycle, in one transaction."""
    now = clock()
    with writing(engine) as conn:
        try:
            version_id, model = active_version(conn)
        except NoActiveModel:
            version_id, model = None, None
        stored = repo.lock_lead(conn, lead_id, 0)
        lead_id, status = stored.record.lead_id, stored.status
        requalify_after = model.lifecycle.requalify_after if model else None
        ctx = TransitionContext(
            lead_id, status.stage, now, reason, status.recycled_at, requalify_after
        )
        change = take_action(
            ctx, action, actor=actor, model_version=model.version if model else "", details=details
        )
        outbox = Outbox.start(conn)
        if model is not None:
            record_late_answer(conn, lead_id, status, now, version_id, outbox)
        repo.insert_rows(conn, transitions, [repo.transition_row(change, version_id)])
        values: dict[str, Any] = {
            "stage": str(change.to_stage),
            "stage_at": now,
            repo.WRITTEN: repo.written_generation(conn),
        }
        if change.from_stage is Stage.MQL:  # answered: the SLA is over
            values["sla_due_at"] = None
        if change.to_stage is Stage.NURTURE:
            values["recycled_at"] = now
        conn.execute(leads.update().where(leads.c.id == lead_id).values(values))
        if outbox.subscriptions:
            status.stage, status.stage_at = change.to_stage, now
            emit_transition(outbox, change, lead_snapshot(lead_id, status))
        outbox.write(conn)
    return change
