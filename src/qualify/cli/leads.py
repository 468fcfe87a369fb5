"""Commands on the store's leads: list, explain, refresh, and the sales actions."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import os
import time
from typing import Annotated, Any

import typer

from qualify.cli import render
from qualify.cli.shared import (
    DbOption,
    JsonOption,
    app,
    bulk,
    engine_for,
    lead_app,
    progress_bar,
)
from qualify.core.lifecycle import BANT_FIELDS
from qualify.errors import QualifyError


@app.command()
def leads(
    db: DbOption = None,
    stage: Annotated[
        str | None, typer.Option(help="Only this stage (lead, mql, sql, ...).")
    ] = None,
    tier: Annotated[str | None, typer.Option(help="Only this tier (e.g. hot).")] = None,
    owner: Annotated[str | None, typer.Option(help="Only leads assigned to this member.")] = None,
    limit: Annotated[int, typer.Option(help="How many, highest score first (0: all).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List leads by score with stage, tier, grade and owner."""
    from qualify.core.lifecycle import Stage
    from qualify.service.queries import iso_times, list_leads

    stage = stage.lower() if stage else None
    if stage is not None and stage not in {s.value for s in Stage}:
        raise QualifyError(
            f"unknown stage `{stage}`: use one of {', '.join(s.value for s in Stage)}"
        )
    engine = engine_for(db)
    if tier is not None:
        from qualify.store.versions import active_version

        with engine.connect() as conn:
            tiers = [name for name, _ in active_version(conn)[1].qualification.tiers]
        if tier not in tiers:
            known = ", ".join(tiers) or "none (the active model defines no tiers)"
            raise QualifyError(f"unknown tier `{tier}`: the active model's tiers are {known}")
    rows = list_leads(engine, stage=stage, tier=tier, owner=owner, limit=limit or None)
    if as_json:
        render.print_json([iso_times(row) for row in rows])
        return
    render.console.print(render.leads_table(rows, f"{len(rows)} leads"))


@app.command()
def explain(
    lead: Annotated[str, typer.Argument(help="The lead id (userId, or anon:<anonymousId>).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every point of a lead with its rule and events, and its stage history."""
    from qualify.service.queries import explain_lead

    explanation = explain_lead(engine_for(db), lead)
    data = explanation.to_dict()
    if as_json:
        render.print_json(data)
        return
    _print_explanation(data)


def _details(details: dict[str, Any]) -> str:
    """BANT and amounts as sales entered them; a qualification shows its score."""
    shown = {k: v for k, v in details.items() if k != "rules"}
    if "score" in shown:
        shown["score"] = render.points(shown["score"])
    return ", ".join(f"{k}: {v}" for k, v in shown.items())


def _print_explanation(data: dict[str, Any]) -> None:
    from rich.table import Table

    lead = data["lead"]
    render.console.print(
        f"[bold]{lead['id']}[/]  stage {lead['stage']}  score {render.points(data['score'])} "
        f"(fit {render.points(data['fit'])} + engagement {render.points(data['engagement'])})  "
        f"tier {data['tier'] or '-'}  grade {data['grade'] or '-'}  "
        f"MQL {'yes' if data['mql'] else 'no'}  PQL {'yes' if data['pql'] else 'no'}"
    )
    render.console.print(
        f"scored at {render.when(lead['scored_at'])}, source {lead['source'] or '-'}", markup=False
    )
    table = Table(title="points", title_justify="left")
    for name in ("rule", "aspect", "points", "why", "events"):
        table.add_column(name)
    for c in data["contributions"]:
        why = []
        if c["capped"]:
            why.append(f"capped (raw {render.points(c['raw_points'])})")
        if c["decayed"] and c["aspect"] == "engagement":
            why.append(f"decayed from {render.points(c['raw_points'])}")
        if c["expired"]:
            why.append(f"{c['expired']} expired")
        shown = ", ".join(
            f"{e.get('name', '?')} {e.get('timestamp', '')[:10]}" for e in c["events"][:3]
        )
        if len(c["events"]) > 3:
            shown += f" (+{len(c['events']) - 3} more)"
        table.add_row(c["rule"], c["aspect"], render.points(c["points"]), "; ".join(why), shown)
    render.console.print(table)
    history = Table(title="stage history", title_justify="left")
    for name in ("at", "from", "to", "action", "by", "reason", "details", "model"):
        history.add_column(name)
    for t in data["transitions"]:
        history.add_row(
            t["at"][:16],
            t["from_stage"],
            t["to_stage"],
            t["action"],
            t["actor"],
            t["reason"],
            _details(t["details"]),
            str(t["model_version_id"] or ""),
        )
    render.console.print(history)
    _print_routing(data["routing"])


def _print_routing(routing: dict[str, Any]) -> None:
    from rich.table import Table

    if not routing["history"]:
        return
    sla = routing["sla"]
    if sla is not None:
        left = sla["seconds_left"]
        state = f"due {sla['due_at'][:19]}, " + (
            f"{_span(left)} left" if left >= 0 else f"late by {_span(-left)}"
        )
        render.console.print(f"SLA: {state}", markup=False)
    for b in routing["sla_breaches"]:
        render.console.print(
            f"SLA breached by {b['member'] or '-'}: due {b['due_at'][:19]}, "
            f"recorded {b['breached_at'][:19]}",
            markup=False,
        )
    table = Table(title="routing", title_justify="left")
    for name in ("at", "to", "rule", "how", "passed over", "by"):
        table.add_column(name)
    for r in routing["history"]:
        to = {"assign": r["member"], "nurture": f"nurture {r['campaign']}"}.get(r["kind"], "-")
        table.add_row(
            r["at"][:19],
            to or "-",
            r["rule"] or "",
            r["reason"],
            "\n".join(r["skipped"]),
            r["actor"],
        )
    render.console.print(table)


def _span(seconds: float) -> str:
    """A duration as people read it: seconds, minutes, hours or days."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@app.command()
def refresh(db: DbOption = None) -> None:
    """Rescore every lead as of now: windows close, points decay and expire as time passes."""
    from qualify.service.rescore import rescore_all

    with progress_bar() as progress, bulk():
        task = progress.add_task("refreshing leads", total=None)
        report = rescore_all(
            engine_for(db),
            rebuild=False,
            now=time.time(),
            on_total=lambda n: progress.update(task, total=n),
            progress=lambda n: progress.advance(task, n),
        )
    render.console.print(
        f"{report.leads} leads refreshed, {report.changed} changed stage, flag, tier or grade, "
        f"{report.new_mqls} new MQLs",
        markup=False,
    )


def _sales_action(
    action: str,
    help_text: str,
    *,
    reason_required: bool,
    with_bant: bool = False,
    with_amount: bool = False,
) -> None:
    def command(
        lead: Annotated[str, typer.Argument(help="The lead id.")],
        reason: Annotated[
            str, typer.Option(help="Why (required)." if reason_required else "Why (optional).")
        ] = "",
        by: Annotated[str, typer.Option(help="Who takes the action (recorded).")] = (
            os.environ.get("USER") or "sales"
        ),
        db: DbOption = None,
        budget: Annotated[
            str | None, typer.Option(help="BANT: budget.", hidden=not with_bant)
        ] = None,
        authority: Annotated[
            str | None, typer.Option(help="BANT: authority.", hidden=not with_bant)
        ] = None,
        need: Annotated[str | None, typer.Option(help="BANT: need.", hidden=not with_bant)] = None,
        timeline: Annotated[
            str | None, typer.Option(help="BANT: timeline.", hidden=not with_bant)
        ] = None,
        amount: Annotated[
            float | None, typer.Option(help="Deal amount.", hidden=not with_amount)
        ] = None,
    ) -> None:
        from qualify.service.feedback import record_action

        if reason_required and not reason.strip():
            raise QualifyError(f"`qualify lead {action}` needs a reason: add --reason TEXT")
        details: dict[str, Any] = {}
        for key, value in zip(BANT_FIELDS, (budget, authority, need, timeline), strict=True):
            if value is not None:
                details[key] = value
        if amount is not None:
            details["amount"] = amount
        change = record_action(
            engine_for(db), lead, action, actor=by, reason=reason, details=details
        )
        render.console.print(
            f"{lead}: {change.from_stage} → {change.to_stage} ({action} by {change.actor})",
            markup=False,
        )

    command.__doc__ = help_text
    lead_app.command(action)(command)


_sales_action(
    "accept",
    "Sales accepts an MQL: it becomes an SQL (optional BANT).",
    reason_required=False,
    with_bant=True,
)
_sales_action(
    "reject", "Sales rejects a lead back to nurture (reason required).", reason_required=True
)
_sales_action("disqualify", "Disqualify a lead for good (reason required).", reason_required=True)
_sales_action("opportunity", "An SQL becomes an opportunity.", reason_required=False)
_sales_action(
    "won", "The deal is won: the lead becomes a customer.", reason_required=False, with_amount=True
)
_sales_action(
    "lost",
    "The deal is lost: the lead goes back to nurture (reason required).",
    reason_required=True,
)
