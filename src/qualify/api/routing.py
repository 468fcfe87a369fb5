"""The routing API: assign or re-route a lead, and members' availability."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StrictBool

from qualify.api.leads import LEAD, Reader, Seller
from qualify.core.activity import format_time
from qualify.core.routing import Decision
from qualify.service.routing import assign_lead, list_members, reroute_lead, set_available

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["routing"])


class Assign(BaseModel):
    member: str = Field(..., pattern=r"\S", description="who gets the lead")
    team: str | None = Field(None, description="the member's team (recorded)")
    actor: str | None = Field(None, description="who assigns (default: the key's name)")


class Reroute(BaseModel):
    actor: str | None = Field(None, description="who re-routes (default: the key's name)")


class Availability(BaseModel):
    available: StrictBool = Field(..., description="true or false (not text)")
    note: str = Field("", description="why, or until when")
    actor: str | None = None


def _decision(decision: Decision) -> dict[str, Any]:
    return {"lead": decision.lead_id, **decision.to_dict(), "at": format_time(decision.at)}


@router.post(f"{LEAD}/assign", summary="Give the lead to a member by hand")
def assign(request: Request, lead_id: str, key: Seller, body: Assign) -> dict[str, Any]:
    decision = assign_lead(
        request.app.state.engine,
        lead_id,
        body.member,
        actor=body.actor or f"{key.role}:{key.name}",
        team=body.team,
    )
    return _decision(decision)


@router.post(f"{LEAD}/route", summary="Route the MQL again by the model's rules")
def route(request: Request, lead_id: str, key: Seller, body: Reroute | None = None) -> Any:
    actor = (body.actor if body else None) or f"{key.role}:{key.name}"
    return _decision(reroute_lead(request.app.state.engine, lead_id, actor=actor))


@router.get("/members", summary="Members the model routes to: availability, open MQLs")
def members(request: Request, _: Reader) -> dict[str, Any]:
    return {"members": list_members(request.app.state.engine)}


@router.put("/members/{name}", summary="Mark a member available or not (out of office)")
def availability(request: Request, name: str, key: Seller, body: Availability) -> Any:
    engine = request.app.state.engine
    actor = body.actor or f"{key.role}:{key.name}"
    set_available(engine, name, body.available, actor=actor, note=body.note)
    found = next((m for m in list_members(engine) if m["member"] == name.strip()), None)
    return found
