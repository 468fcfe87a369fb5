"""The webhook API: subscriptions (admin keys), their deliveries, and replay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from qualify.api.leads import require
from qualify.service.queries import iso_times
from qualify.service.webhooks import (
    EVENT_TYPES,
    add_subscription,
    list_subscriptions,
    remove_subscription,
    replay,
)
from qualify.store.keys import ApiKey

__all__ = ["router"]

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
Admin = Depends(require("keys"))  # subscriptions hold secrets: admin keys only


class Subscription(BaseModel):
    url: str = Field(..., description="where to POST events (http or https)")
    events: list[str] = Field(..., min_length=1, description=f"any of {', '.join(EVENT_TYPES)}")
    min_score_change: float = Field(
        0.0, ge=0, description="lead.score_changed only when the score moves at least this much"
    )


class Replay(BaseModel):
    delivery: int | None = Field(None, description="one delivery (default: all of them)")
    dead_only: bool = Field(True, description="only deliveries that were given up")


@router.post("", summary="Subscribe a URL to lead events (the answer holds the secret)")
def create(request: Request, body: Subscription, key: ApiKey = Admin) -> dict[str, Any]:
    created = add_subscription(
        request.app.state.engine,
        body.url,
        body.events,
        created_by=f"{key.role}:{key.name}",
        min_score_change=body.min_score_change,
    )
    if request.app.state.deliveries is not None:
        request.app.state.deliveries.ensure()  # this worker sends at once; others soon
    return iso_times(created)


@router.get("", summary="Subscriptions and their deliveries by state")
def listing(request: Request, key: ApiKey = Admin) -> dict[str, Any]:
    return {"webhooks": [iso_times(s) for s in list_subscriptions(request.app.state.engine)]}


@router.delete("/{sub_id}", summary="Stop a subscription")
def delete(request: Request, sub_id: int, key: ApiKey = Admin) -> dict[str, Any]:
    remove_subscription(request.app.state.engine, sub_id)
    return {"id": sub_id, "active": False}


@router.post("/{sub_id}/replay", summary="Send deliveries again (by default the dead ones)")
def replay_deliveries(
    request: Request, sub_id: int, body: Replay | None = None, key: ApiKey = Admin
) -> dict[str, Any]:
    body = body or Replay()
    count = replay(
        request.app.state.engine,
        subscription=sub_id,
        delivery=body.delivery,
        dead_only=body.dead_only,
    )
    return {"queued": count}
