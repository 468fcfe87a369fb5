"""`qualify demo`: build a store from generated data, score it, and show what came out."""

# No `from __future__ import annotations`: Typer reads the `demo` command's annotations.

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from qualify.cli import render
from qualify.cli.shared import DbOption, app, progress_bar
from qualify.errors import QualifyError
from qualify.model import load_model
from qualify.service.demo import DAY, DemoSpec, demo_model_text, generate

if TYPE_CHECKING:  # the store is imported where it is used, so `qualify score` starts fast
    from sqlalchemy import Engine

__all__ = ["run_demo"]

DEMO_MODEL_NAME = "demo-saas"
REJECT_REASONS = (
    "no budget this year",
    "student, not a buyer",
    "already a customer of a competitor",
    "wrong region",
)
LOST_REASONS = ("chose a competitor", "project postponed", "price")


def _fresh_store(db: str | None) -> "Engine":
    """A new, empty store. An existing SQLite demo store is replaced; anything else that
    already holds data is refused, so the demo never overwrites real leads."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from qualify.store import database_url, open_engine
    from qualify.store.tables import leads, model_versions

    url = make_url(database_url(db))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if path.exists():
            engine = open_engine(db)
            with engine.connect() as conn:
                names = set(conn.execute(select(model_versions.c.name)).scalars())
                count = conn.execute(select(leads.c.id).limit(1)).first()
            engine.dispose()
            if count is not None and names != {DEMO_MODEL_NAME}:
                raise QualifyError(
                    f"{path} already holds leads that are not the demo's: "
                    "use another --db for the demo"
                )
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return open_engine(db)
    engine = open_engine(db)
    with engine.connect() as conn:
        if conn.execute(select(leads.c.id).limit(1)).first() is not None:
            raise QualifyError("that database already holds leads: the demo needs an empty one")
    return engine


def run_demo(
    db: str | None,
    *,
    leads_count: int,
    seed: int,
    top: int,
    progress: Callable[[], Progress],
    now: float | None = None,
) -> dict[str, Any]:
    from qualify.service.feedback import record_action
    from qualify.service.ingest import Ingestor, IngestReport
    from qualify.service.queries import explain_lead, funnel, list_leads
    from qualify.service.rescore import activate_model, rescore_all

    if leads_count < 1:
        raise QualifyError("--leads must be at least 1")
    now = time.time() if now is None else now
    rng = random.Random(seed)
    engine = _fresh_store(db)
    model = load_model(demo_model_text(), "demo-model.yaml")
    started = time.perf_counter()
    activate_model(engine, model, clock=lambda: now - 90 * DAY, created_by="demo")
    spec = DemoSpec(leads=leads_count, accounts=max(1, leads_count // 6))
    messages = sorted(generate(spec, rng=rng, now=now), key=lambda e: (e.timestamp, e.message_id))
    ingestor = Ingestor(engine, clock=lambda: now)
    report = IngestReport()
    with progress() as bar:
        task = bar.add_task("scoring demo events", total=len(messages))
        # a week at a time, as a store fed by a weekly import would have taken them: each
        # week's MQLs are qualified and routed at its end, before sales can act on them
        for day_end, day in _by_period(messages, now, 7 * DAY):
            report.add(ingestor.ingest_batch(day, now=day_end))
            bar.advance(task, len(day))
    outcomes = _sales_outcomes(engine, rng, now, record_action)
    rescore_all(engine, rebuild=False, now=now)  # recycled leads whose wait ended requalify
    elapsed = time.perf_counter() - started
    counts = funnel(engine)
    render.console.print(
        f"demo store {engine.url.render_as_string()}: {counts['leads']:,} leads, "
        f"{report.ingested:,} events over 90 days, scored in {elapsed:.1f}s "
        f"({report.ingested / elapsed:,.0f} events/s); {outcomes} sales actions recorded",
        markup=False,
    )
    _funnel_table(counts)
    waiting = list_leads(engine, stage="mql", limit=None)  # sales', not nurture campaigns'
    top_rows = [r for r in waiting if r["routing"] != "nurture"][:top]
    table = Table(title=f"top {len(top_rows)} MQLs waiting for sales", title_justify="left")
    for name in ("lead", "score", "tier", "grade", "source", "MQL since", "routed to", "reasons"):
        table.add_column(name)
    for row in top_rows:
        data = explain_lead(engine, row["id"]).to_dict()
        table.add_row(
            row["id"],
            render.points(row["score"]),
            row["tier"] or "",
            row["grade"] or "",
            row["source"] or "",
            render.when(row["qualified_at"]),
            render.routed_to(row),
            render.reasons(data["contributions"]),
        )
    render.console.print(table)
    render.console.print(
        "next: `qualify leads --stage mql`, `qualify explain "
        f"{top_rows[0]['id'] if top_rows else 'LEAD'}`, "
        "`qualify lead accept LEAD`",
        markup=False,
    )
    return counts


def _funnel_table(counts: dict[str, Any]) -> None:
    table = Table(title="funnel", title_justify="left")
    table.add_column("stage")
    table.add_column("now", justify="right")
    table.add_column("ever reached", justify="right")
    for stage, count in counts["by_stage"].items():
        ever = counts["ever"].get(stage, "")
        table.add_row(stage, f"{count:,}", f"{ever:,}" if ever != "" else "")
    render.console.print(table)


def _by_period(messages: list[Any], now: float, period: float) -> Iterator[tuple[float, list[Any]]]:
    """Time-ordered messages in periods ending at `now`, each with its period's end."""
    day: list[Any] = []
    end = None
    for message in messages:
        ends = now - ((now - message.timestamp) // period) * period
        if end is not None and ends != end:
            yield end, day
            day = []
        end = ends
        day.append(message)
    if day and end is not None:
        yield end, day


def _sales_outcomes(engine: "Engine", rng: random.Random, now: float, act: Any) -> int:
    """Sales works part of the MQLs assigned to it, each by its owner after it was routed:
    accept or reject, some become opportunities, won, lost."""
    from sqlalchemy import select

    from qualify.store.tables import leads

    with engine.connect() as conn:
        rows = conn.execute(
            select(leads.c.id, leads.c.routed_at, leads.c.owner)
            .where(leads.c.stage == "mql", leads.c.routing == "assign")
            .order_by(leads.c.id)
        ).all()
    actions = 0
    for lead_id, routed_at, owner in rows:
        at = routed_at + rng.uniform(1, 60) * 3600
        roll = rng.random()
        if at > now or roll > 0.75:
            continue  # still waiting for sales
        plan: list[tuple[str, str]] = []
        if roll < 0.2:
            plan.append(("reject", rng.choice(REJECT_REASONS)))
        else:
            plan.append(("accept", ""))
            if rng.random() < 0.5:
                plan.append(("opportunity", ""))
                fate = rng.random()
                if fate < 0.4:
                    plan.append(("won", ""))
                elif fate < 0.7:
                    plan.append(("lost", rng.choice(LOST_REASONS)))
        for action, reason in plan:
            if at > now:
                break
            details = {"budget": "yes", "need": "month-end close"} if action == "accept" else {}
            moment = at
            act(
                engine,
                lead_id,
                action,
                actor=owner,
                reason=reason,
                details=details,
                clock=lambda moment=moment: moment,
            )
            actions += 1
            at += rng.uniform(2, 20) * DAY
    return actions


@app.command()
def demo(
    db: DbOption = None,
    leads_count: Annotated[int, typer.Option("--leads", help="How many leads to generate.")] = 5200,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 7,
    top: Annotated[int, typer.Option(help="How many top MQLs to show.")] = 10,
) -> None:
    """Build a demo store: generated leads and 90 days of events, scored and qualified."""
    run_demo(db, leads_count=leads_count, seed=seed, top=top, progress=progress_bar)
