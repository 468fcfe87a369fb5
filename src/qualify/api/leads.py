"""The lead API: lists, one lead, its explanation, and sales feedback on it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qualify.api.auth import secret_from_headers
from qualify.api.problems import ApiProblem
from qualify.core.activity import format_time
from qualify.core.lifecycle import BANT_FIELDS, Stage
from qualify.errors import NoActiveModel
from qualify.model.problems import near_miss
from qualify.service.feedback import record_action
from qualify.service.queries import (
    SORTS,
    LeadFilters,
    explain_lead,
    iso_times,
    page_leads,
    recent_events,
)
from qualify.store.keys import ApiKey
from qualify.store.versions import active_version

__all__ = ["LEAD", "require", "router"]

router = APIRouter(prefix="/api", tags=["leads"])


def require(permission: str) -> Callable[[Request], ApiKey]:
    """A dependency: the caller's key, when its role allows `permission`."""

    def check(request: Request) -> ApiKey:
        return request.app.state.keys.authorize(secret_from_headers(request), permission)

    return check


Reader = Annotated[ApiKey, Depends(require("read"))]
# A lead's id in a path may hold "/" (a userId is any text; %2F arrives decoded): the routes
# that end in an action are declared before the one that ends in the id, which would
# otherwise take `x/explain` for an id.
LEAD = "/leads/{lead_id:path}"
Seller = Annotated[ApiKey, Depends(require("feedback"))]


def _cursor(sort: str, position: tuple[Any, str] | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(orjson.dumps([sort, *position])).decode()


def _position(cursor: str | None, sort: str) -> tuple[Any, str] | None:
    """The position a cursor holds; it must come from a page of the same sort."""
    if not cursor:
        return None
    invalid = ApiProblem(400, "invalid_cursor", "`cursor` is not one this API gave for this sort")
    try:
        made_for, value, lead_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, TypeError):
        raise invalid from None
    numeric = SORTS[sort][0] != "id"
    if made_for != sort or not isinstance(lead_id, str):
        raise invalid
    if numeric != isinstance(value, int | float) or isinstance(value, bool):
        raise invalid
    return value, lead_id


def _check_filters(request: Request, filters: LeadFilters) -> None:
    """A filter value no lead can have is a typo: say so rather than answer nothing."""
    if filters.stage is not None and filters.stage not in {str(s) for s in Stage}:
        stages = ", ".join(str(s) for s in Stage)
        raise ApiProblem(400, "invalid_filter", f"unknown stage `{filters.stage}`: use {stages}")
    try:
        with request.app.state.engine.connect() as conn:
            _, model = active_version(conn)
    except NoActiveModel:
        return
    q = model.qualification
    for field, names in (("tier", [n for n, _ in q.tiers]), ("grade", [n for n, _ in q.grades])):
        value = getattr(filters, field)
        if value is not None and value not in names:
            known = ", ".join(names) or "none in the active model"
            raise ApiProblem(400, "invalid_filter", f"unknown {field} `{value}`: use {known}")


@router.get("/leads", summary="Leads, filtered and sorted, a page at a time")
def list_leads(
    request: Request,
    _: Reader,
    stage: str | None = None,
    tier: str | None = None,
    grade: str | None = None,
    source: str | None = None,
    owner: Annotated[str | None, Query(description="the member the lead is assigned to")] = None,
    min_score: float | None = None,
    sort: Annotated[str, Query(description=f"one of {', '.join(SORTS)}")] = "-score",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    if sort not in SORTS:
        raise ApiProblem(400, "invalid_sort", f"`sort` must be one of {', '.join(SORTS)}")
    filters = LeadFilters(stage, tier, grade, source, owner, min_score)
    _check_filters(request, filters)
    rows, position = page_leads(
        request.app.state.engine, filters, sort=sort, after=_position(cursor, sort), limit=limit
    )
    return {"leads": [iso_times(r) for r in rows], "next_cursor": _cursor(sort, position)}


@router.get(f"{LEAD}/explain", summary="Every point of a lead, with rule and events")
def explain(request: Request, lead_id: str, _: Reader) -> dict[str, Any]:
    explanation = explain_lead(request.app.state.engine, lead_id).to_dict()
    explanation["lead"] = iso_times(explanation["lead"])
    return explanation


@router.get(LEAD, summary="One lead: profile, scores, contributions, history")
def get_lead(request: Request, lead_id: str, _: Reader) -> dict[str, Any]:
    engine = request.app.state.engine
    explanation = explain_lead(engine, lead_id).to_dict()
    explanation["lead"] = iso_times(explanation["lead"])
    explanation["recent_events"] = recent_events(engine, explanation["lead"]["id"])
    return explanation


class Feedback(BaseModel):
    """A sales action's body. A field it does not know is refused with the near miss: a
    misspelt `budget` would otherwise vanish from the lead's history unnoticed."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(None, description="who acts (default: the key's name)")
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                if name not in cls.model_fields:
                    hint = near_miss(name, cls.model_fields)
                    known = ", ".join(f"`{f}`" for f in cls.model_fields)
                    raise ValueError(
                        f"unknown field `{name}`"
                        + (f": did you mean `{hint}`?" if hint else f" (known: {known})")
                    )
        return data


class Accept(Feedback):
    budget: str | None = None
    authority: str | None = None
    need: str | None = None
    timeline: str | None = None


class Reasoned(Feedback):
    reason: str = Field(..., description="why (required, not blank)")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("say why: the reason must not be blank")
        return reason


class Amount(Feedback):
    amount: float | None = Field(None, ge=0, description="the deal's value (not negative)")


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


@router.post(f"{LEAD}/accept", summary="Sales accepts the MQL (→ sql), with BANT")
def accept(request: Request, lead_id: str, key: Seller, body: Accept | None = None) -> Any:
    return _act(request, key, lead_id, "accept", body or Accept())


@router.post(f"{LEAD}/reject", summary="Sales rejects the MQL (→ nurture)")
def reject(request: Request, lead_id: str, key: Seller, body: Reasoned) -> Any:
    return _act(request, key, lead_id, "reject", body)


@router.post(f"{LEAD}/disqualify", summary="Disqualify the lead")
def disqualify(request: Request, lead_id: str, key: Seller, body: Reasoned) -> Any:
    return _act(request, key, lead_id, "disqualify", body)


@router.post(f"{LEAD}/opportunity", summary="The lead became an opportunity")
def opportunity(request: Request, lead_id: str, key: Seller, body: Amount | None = None) -> Any:
    return _act(request, key, lead_id, "opportunity", body or Amount())


@router.post(f"{LEAD}/won", summary="The deal was won (→ customer)")
def won(request: Request, lead_id: str, key: Seller, body: Amount | None = None) -> Any:
    return _act(request, key, lead_id, "won", body or Amount())


@router.post(f"{LEAD}/lost", summary="The deal was lost")
def lost(request: Request, lead_id: str, key: Seller, body: Reasoned) -> Any:
    return _act(request, key, lead_id, "lost", body)
