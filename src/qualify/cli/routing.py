"""Commands on routing: assign and re-route a lead, members' availability, the worker."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import os
import time
from typing import Annotated, Any

import typer

from qualify.cli import render
from qualify.cli.shared import (
    DbOption,
    JsonOption,
    WebhookBaseDelay,
    WebhookMaxAttempts,
    app,
    engine_for,
    lead_app,
)

members_app = typer.Typer(
    help="Members who take leads: who is available, how many open MQLs they hold.",
    no_args_is_help=True,
)
app.add_typer(members_app, name="members")

ByOption = Annotated[str, typer.Option("--by", help="Who does it (recorded).")]


def _me() -> str:
    return os.environ.get("USER") or "ops"


def _warn_if_unknown(engine: Any, member: str) -> None:
    """Names are free text: say so when one is in no routing rule (a typo?)."""
    from qualify.errors import NoActiveModel
    from qualify.service.routing import teams_of
    from qualify.store.versions import active_version

    try:
        with engine.connect() as conn:
            _, model = active_version(conn)
    except NoActiveModel:
        return
    if not teams_of(model, member.strip()):
        render.err.print(
            f"note: {member.strip()} is in no team of the active model's routing rules "
            "(check the spelling; `qualify members list` shows the members)",
            markup=False,
        )


def _print_decision(lead: str, decision: Any) -> None:
    if decision.kind == "assign":
        where = f"assigned to {decision.member}" + (f" ({decision.team})" if decision.team else "")
    elif decision.kind == "nurture":
        where = f"to nurture campaign {decision.campaign}"
    else:
        where = "unrouted"
    render.console.print(f"{lead}: {where} — {decision.reason}", markup=False)


@lead_app.command("assign")
def assign(
    lead: Annotated[str, typer.Argument(help="The lead id.")],
    member: Annotated[str, typer.Argument(help="Who gets the lead.")],
    team: Annotated[str | None, typer.Option(help="The member's team (recorded).")] = None,
    by: ByOption = "",
    db: DbOption = None,
) -> None:
    """Give a lead to a member by hand (recorded with who did it)."""
    from qualify.service.routing import assign_lead

    engine = engine_for(db)
    decision = assign_lead(engine, lead, member, actor=by or _me(), team=team)
    _print_decision(lead, decision)
    _warn_if_unknown(engine, member)


@lead_app.command("route")
def route(
    lead: Annotated[str, typer.Argument(help="The lead id (an MQL).")],
    by: ByOption = "",
    db: DbOption = None,
) -> None:
    """Route an MQL again by the active model's routing rules."""
    from qualify.service.routing import reroute_lead

    _print_decision(lead, reroute_lead(engine_for(db), lead, actor=by or _me()))


@members_app.command("list")
def list_(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Members the active model routes to (and any marked by hand), with open MQLs."""
    from rich.table import Table

    from qualify.service.routing import list_members

    rows = list_members(engine_for(db))
    if as_json:
        render.print_json(rows)
        return
    table = Table(title=f"{len(rows)} members", title_justify="left")
    for name in ("member", "teams", "available", "open MQLs", "capacity", "note"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            r["member"],
            ", ".join(r["teams"]) or "(in no routing rule)",
            "yes" if r["available"] else "no",
            str(r["open_mqls"]),
            "" if r["capacity"] is None else str(r["capacity"]),
            r["note"],
        )
    render.console.print(table)


@members_app.command("away")
def away(
    member: Annotated[str, typer.Argument(help="The member (as the model names them).")],
    note: Annotated[str, typer.Option(help="Why, or until when.")] = "",
    by: ByOption = "",
    db: DbOption = None,
) -> None:
    """Mark a member unavailable (out of office): routing skips them."""
    from qualify.service.routing import set_available

    engine = engine_for(db)
    set_available(engine, member, False, actor=by or _me(), note=note)
    render.console.print(f"{member} is unavailable: routing skips them", markup=False)
    _warn_if_unknown(engine, member)


@members_app.command("back")
def back(
    member: Annotated[str, typer.Argument(help="The member.")],
    by: ByOption = "",
    db: DbOption = None,
) -> None:
    """Mark a member available again."""
    from qualify.service.routing import set_available

    engine = engine_for(db)
    set_available(engine, member, True, actor=by or _me())
    render.console.print(f"{member} is available", markup=False)
    _warn_if_unknown(engine, member)


@app.command()
def worker(
    db: DbOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between rounds.", min=0.1)] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    webhook_base_delay: WebhookBaseDelay = 5.0,
    webhook_max_attempts: WebhookMaxAttempts = 10,
) -> None:
    """Run the background work without the HTTP server: SLA breaches, MQLs waiting for a
    member, webhook deliveries. `qualify serve` runs the same in each of its workers."""
    import httpx

    from qualify.service.scheduler import run_round
    from qualify.service.webhooks import DeliveryPolicy, deliver_due

    engine = engine_for(db)
    policy = DeliveryPolicy(base_delay=webhook_base_delay, max_attempts=webhook_max_attempts)
    if not once:
        render.console.print(f"worker: a round every {interval:g}s (Ctrl-C stops)", markup=False)
    with httpx.Client(timeout=policy.timeout) as client:
        while True:
            try:
                report = run_round(engine)
                sent = 0
                while (batch := deliver_due(engine, client, policy=policy)) > 0:
                    sent += batch
            except Exception as exc:
                if once:
                    raise
                # a busy or unreachable store: say so and try again next round
                render.err.print(
                    f"{time.strftime('%H:%M:%S')} round failed, retrying in {interval:g}s: "
                    f"{type(exc).__name__}: {exc}",
                    markup=False,
                )
                time.sleep(interval)
                continue
            if report.breached or report.routed or report.requalified or sent or once:
                render.console.print(
                    f"{time.strftime('%H:%M:%S')} {report.breached} SLA breaches "
                    f"({report.reassigned} reassigned), {report.routed} waiting MQLs routed, "
                    f"{report.requalified} recycled leads requalified, "
                    f"{sent} webhook deliveries tried",
                    markup=False,
                )
            if once:
                return
            time.sleep(interval)
