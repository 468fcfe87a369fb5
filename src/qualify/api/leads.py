"""The lead API: lists, one lead, its explanation, and sales feedback on it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from qualify.api.auth import secret_from_headers
from qualify.api.problems import ApiProblem
from qualify.core.activity import format_time
from qualify.core.lifecycle import BANT_FIELDS
from qualify.service.feedback import record_action
from qualify.service.queries import SORTS, LeadFilters, explain_lead, page_leads, recent_events
from qualify.store.keys import ApiKey

__all__ = ["require", "router"]

router = APIRouter(prefix="/api", tags=["leads"])


def require(permission: str) -> Callable[[Request], ApiKey]:
    """A dependency: the caller's key, when its role allows `permission`."""

    def check(request: Request) -> ApiKey:
        return request.app.state.keys.authorize(secret_from_headers(request), permission)

    return check


Reader = Annotated[ApiKey, Depends(require("read"))]
Seller = Annotated[ApiKey, Depends(require("feedback"))]


def _cursor(position: tuple[Any, str] | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode()


def _position(cursor: str | None) -> tuple[Any, str] | None:
    if not cursor:
        return None
    try:
        value, lead_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, TypeError):
        raise ApiProblem(400, "invalid_cursor", "`cursor` is not one this API gave") from None
    return value, str(lead_id)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column in ("qualified_at", "scored_at", "stage_at"):
        if out.get(column) is not None:
            out[column] = format_time(out[column])
    return out


@router.get("/leads", summary="Leads, filtered and sorted, a page at a time")
def list_leads(
    request: Request,
    _: Reader,
    stage: str | None = None,
    tier: str | None = None,
    grade: str | None = None,
    source: str | None = None,
    min_score: float | None = None,
    sort: Annotated[str, Query(description=f"one of {', '.join(SORTS)}")] = "-score",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    if sort not in SORTS:
        raise ApiProblem(400, "invalid_sort", f"`sort` must be one of {', '.join(SORTS)}")
    filters = LeadFilters(stage, tier, grade, source, min_score)
    rows, position = page_leads(
        request.app.state.engine, filters, sort=sort, after=_position(cursor), limit=limit
    )
    return {"leads": [_summary(r) for r in rows], "next_cursor": _cursor(position)}


@router.get("/leads/{lead_id}", summary="One lead: profile, scores, contributions, history")
def get_lead(request: Request, lead_id: str, _: Reader) -> dict[str, Any]:
    engine = request.app.state.engine
    explanation = explain_lead(engine, lead_id).to_dict()
    explanation["recent_events"] = recent_events(engine, explanation["lead"]["id"])
    return explanation


@router.get("/leads/{lead_id}/explain", summary="Every point of a lead, with rule and events")
def explain(request: Request, lead_id: str, _: Reader) -> dict[str, Any]:
    return explain_lead(request.app.state.engine, lead_id).to_dict()


class Feedback(BaseModel):
    actor: str | None = Field(None, description="who acts (default: the key's name)")
    reason: str = ""


class Accept(Feedback):
    budget: str | None = None
    authority: str | None = None
    need: str | None = None
    timeline: str | None = None


class Reasoned(Feedback):
    reason: str = Field(..., min_length=1)


class Amount(Feedback):
    amount: float | None = None


def _act(
    request: Request,
    key: ApiKey,
    lead_id: str,
    action: Literal["accept", "reject", "disqualify", "opportunity", "won", "lost"],
    body: Feedback,
) -> dict[str, Any]:
    details = {
        k: v
        for k, v in body.model_dump().items()
        if k in (*BANT_FIELDS, "amount") and v is not None
    }
    change = record_action(
        request.app.state.engine,
        lead_id,
        action,
        actor=body.actor or f"{key.role}:{key.name}",
        reason=body.reason,
        details=details,
    )
    return {
        "lead": change.lead_id,
        "action": change.action,
        "from_stage": str(change.from_stage),
        "to_stage": str(change.to_stage),
        "actor": change.actor,
        "reason": change.reason,
        "at": format_time(change.at),
        "details": dict(change.details),
    }


@router.post("/leads/{lead_id}/accept", summary="Sales accepts the MQL (→ sql), with BANT")
def accept(request: Request, lead_id: str, key: Seller, body: Accept | None = None) -> Any:
    return _act(request, key, lead_id, "accept", body or Accept())


@router.post("/leads/{lead_id}/reject", summary="Sales rejects the MQL (→ nurture)")
def reject(request: Request, lead_id: str, key: Seller, body: Reasoned) -> Any:
    return _act(request, key, lead_id, "reject", body)


@router.post("/leads/{lead_id}/disqualify", summary="Disqualify the lead")
def disqualify(request: Request, lead_id: str, key: Seller, body: Reasoned) -> Any:
    return _act(request, key, lead_id, "disqualify", body)


@router.post("/leads/{lead_id}/opportunity", summary="The lead became an opportunity")
def opportunity(request: Request, lead_id: str, key: Seller, body: Amount | None = None) -> Any:
    return _act(request, key, lead_id, "opportunity", body or Amount())


@router.post("/leads/{lead_id}/won", summary="The deal was won (→ customer)")
def won(request: Request, lead_id: str, key: Seller, body: Amount | None = None) -> Any:
    return _act(request, key, lead_id, "won", body or Amount())


@router.post("/leads/{lead_id}/lost", summary="The deal was lost")
def lost(request: Request, lead_id: str, key: Seller, body: Reasoned) -> Any:
    return _act(request, key, lead_id, "lost", body)
