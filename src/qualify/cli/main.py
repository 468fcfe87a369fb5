"""The `qualify` command line: Typer commands over the same services the API uses.

Every expected failure is a `QualifyError`: it is printed as what is wrong and how to fix
it, with exit code 2, never as a traceback.
"""

# No `from __future__ import annotations` here: Typer reads the annotations at run time, and
# the sales-action commands are built in a function whose options depend on its arguments.
import contextlib
import dataclasses
import gc
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from qualify import __version__
from qualify.cli import render
from qualify.core.activity import ActivityEvent, format_time, parse_time
from qualify.core.lifecycle import BANT_FIELDS
from qualify.core.scoring import CompiledModel
from qualify.errors import IngestError, MessageError, ModelError, QualifyError
from qualify.model import ScoringModel, json_schema, load_model

app = typer.Typer(
    name="qualify",
    help="Qualify: open, exact lead scoring and qualification (MQL, PQL) from a YAML model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="Store and activate scoring models.", no_args_is_help=True)
lead_app = typer.Typer(help="Sales actions on a lead (the lifecycle).", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(lead_app, name="lead")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="QUALIFY_DATABASE_URL",
        show_envvar=True,
        help="SQLAlchemy URL of the store [default: sqlite:///qualify.db]",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _engine(db: str | None, *, create: bool = False) -> Engine:
    """The store; only `demo` and `model activate` may start a new one."""
    from qualify.store import open_engine

    return open_engine(db, create=create)


def _read_model(path: Path) -> ScoringModel:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QualifyError(f"no model file {path}: give the path of a YAML model") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QualifyError(f"cannot read {path}: {exc}") from None
    return load_model(text, str(path))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=render.err,
        transient=False,
        disable=not render.err.is_terminal and os.environ.get("QUALIFY_PROGRESS") != "1",
    )


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """Bulk work keeps hundreds of thousands of small objects alive (rule states), and the
    cyclic garbage collector would rescan them again and again: measured, that costs a third
    of `qualify score`'s time. Our hot path creates no reference cycles, so collect rarely."""
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _as_of(value: str | None) -> float:
    if value is None:
        return time.time()
    try:
        return parse_time(value)
    except MessageError:
        raise QualifyError(
            f"--as-of {value!r} is not an ISO-8601 time, e.g. 2026-03-01T00:00:00Z"
        ) from None


@app.command()
def check(
    models: Annotated[list[Path], typer.Argument(help="Model files to validate.")],
) -> None:
    """Validate model files: every problem with file:line:col, a caret, and a suggestion."""
    failed = False
    for path in models:
        try:
            model = _read_model(path)
        except ModelError as exc:
            render.err.print(exc.render(), markup=False)
            failed = True
            continue
        rules = len(model.fit) + len(model.engagement)
        render.console.print(
            f"{path}: ok — model `{model.name}` version {model.version}, {rules} rules",
            markup=False,
        )
    if failed:
        raise typer.Exit(2)


@app.command()
def schema() -> None:
    """Print the JSON Schema of model files (for editors' completion and checks)."""
    render.print_json(json_schema())


@app.command()
def score(
    model: Annotated[Path, typer.Argument(help="The scoring model (YAML).")],
    events: Annotated[Path, typer.Argument(help="Segment messages, JSON Lines.")],
    as_of: Annotated[
        str | None, typer.Option(help="Score as of this time (ISO-8601); default: now.")
    ] = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="Rows in the table (not for --json).")] = 20,
) -> None:
    """Score a file of messages without a database (stateless).

    Bad lines are reported with their line number and skipped (exit code 1).
    """
    from qualify.service.files import Problems, read_jsonl
    from qualify.service.stateless import score_events

    compiled = CompiledModel(_read_model(model))
    moment = _as_of(as_of)
    problems = Problems()
    with _open(events) as lines, _bulk():
        results = score_events(compiled, read_jsonl(lines, problems), moment, explain=as_json)
        if as_json:
            out = sys.stdout.buffer
            for lead_id, result, _profile in results:
                out.write(orjson.dumps({"lead": lead_id, **result.to_dict()}) + b"\n")
            out.flush()
        else:
            ranked = sorted(
                ((r.score, lead_id, r) for lead_id, r, _ in results),
                reverse=True,
                key=lambda item: (item[0], item[1]),
            )
            _score_table(ranked, limit)
    _report_problems(events, problems)
    if problems.items:
        raise typer.Exit(1)


def _score_table(ranked: list[Any], limit: int) -> None:
    from rich.table import Table

    mqls = sum(1 for _, _, r in ranked if r.mql)
    table = Table(
        title=f"{len(ranked)} leads, {mqls} MQLs (top {min(limit, len(ranked))})",
        title_justify="left",
    )
    for name in ("lead", "score", "fit", "engagement", "mql", "pql", "tier", "grade", "reasons"):
        table.add_column(name)
    for total, lead_id, r in ranked[:limit]:
        contributions = [c.to_dict() for c in r.contributions]
        table.add_row(
            lead_id,
            render.points(total),
            render.points(r.fit),
            render.points(r.engagement),
            "yes" if r.mql else "",
            "yes" if r.pql else "",
            r.tier or "",
            r.grade or "",
            render.reasons(contributions),
        )
    render.console.print(table)


def _open(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise QualifyError(f"no such file: {path}") from None
    except OSError as exc:
        raise QualifyError(f"cannot read {path}: {exc}") from None


def _report_problems(path: Path, problems: Any, *, limit: int = 20) -> None:
    for problem in problems.items[:limit]:
        render.err.print(f"{path}:{problem.line}: skipped: {problem.reason}", markup=False)
    if len(problems.items) > limit:
        render.err.print(
            f"... and {len(problems.items) - limit} more bad lines in {path}", markup=False
        )


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Segment JSON Lines (.jsonl) or CSV files.")],
    db: DbOption = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="CSV column to message field, e.g. Email=userId, "
            "Industry=traits.industry (repeatable).",
        ),
    ] = None,
    message_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="Message type of CSV rows (default: track if an `event` column is "
            "mapped, else identify).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Messages per transaction.")] = 100_000,
) -> None:
    """Ingest message files into the store: events, scores, ledger and stage changes.

    Bad lines are reported with their line number and skipped; the rest is ingested and the
    exit code is 1. Each batch is committed before the next is read.
    """
    from qualify.service.files import ColumnMapping, Problems, read_csv, read_jsonl
    from qualify.service.ingest import Ingestor, IngestReport

    column_mapping = ColumnMapping.parse(mapping or [], message_type)
    for path in files:
        if not path.is_file():
            raise QualifyError(f"no such file: {path}")
    ingestor = Ingestor(_engine(db), batch_size=batch_size)
    total = IngestReport()
    skipped = 0
    for path in files:
        problems = Problems()
        size = path.stat().st_size if path.exists() else 0
        with _progress() as progress, _open(path) as raw, _bulk():
            task = progress.add_task(f"ingesting {path.name}", total=size or None)
            if path.suffix.lower() == ".csv":
                import io

                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                messages: Iterator[ActivityEvent] = read_csv(
                    text, column_mapping, problems, received_at=time.time()
                )
            else:
                messages = read_jsonl(raw, problems, keep_raw=True)
            report = ingestor.ingest(
                messages,
                progress=lambda _n, task=task: progress.update(task, completed=raw.tell()),
            )
        total.add(report)
        skipped += len(problems.items)
        _report_problems(path, problems)
        render.console.print(
            f"{path}: {report.ingested} messages ingested, {report.duplicates} duplicates "
            f"ignored, {len(problems.items)} bad lines skipped; {report.leads_touched} leads "
            f"updated, {report.new_mqls} new MQLs",
            markup=False,
        )
    if len(files) > 1:
        render.console.print(f"total: {total.ingested} ingested, {total.new_mqls} new MQLs")
    if skipped:
        raise typer.Exit(1)  # done, but not everything: scripts should notice


@app.command()
def leads(
    db: DbOption = None,
    stage: Annotated[
        str | None, typer.Option(help="Only this stage (lead, mql, sql, ...).")
    ] = None,
    tier: Annotated[str | None, typer.Option(help="Only this tier (e.g. hot).")] = None,
    limit: Annotated[int, typer.Option(help="How many, highest score first (0: all).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List leads by score with stage, tier and grade."""
    from qualify.core.lifecycle import Stage
    from qualify.service.queries import list_leads

    stage = stage.lower() if stage else None
    if stage is not None and stage not in {s.value for s in Stage}:
        raise QualifyError(
            f"unknown stage `{stage}`: use one of {', '.join(s.value for s in Stage)}"
        )
    engine = _engine(db)
    if tier is not None:
        from qualify.store.versions import active_version

        with engine.connect() as conn:
            tiers = [name for name, _ in active_version(conn)[1].qualification.tiers]
        if tier not in tiers:
            known = ", ".join(tiers) or "none (the active model defines no tiers)"
            raise QualifyError(f"unknown tier `{tier}`: the active model's tiers are {known}")
    rows = list_leads(engine, stage=stage, tier=tier, limit=limit or None)
    if as_json:
        render.print_json([_iso_times(row) for row in rows])
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

    explanation = explain_lead(_engine(db), lead)
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


def _iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """JSON output names moments in ISO-8601, like `explain --json` does."""
    return {
        k: format_time(v) if k.endswith("_at") and isinstance(v, float) else v
        for k, v in row.items()
    }


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


@model_app.command("activate")
def model_activate(
    model: Annotated[Path, typer.Argument(help="The scoring model (YAML).")],
    db: DbOption = None,
    by: Annotated[str, typer.Option(help="Who activates it (recorded).")] = "cli",
) -> None:
    """Store a model as a new version, make it active and rescore every lead."""
    from qualify.service.rescore import activate_model

    scoring_model = _read_model(model)
    engine = _engine(db, create=True)
    with _progress() as progress:
        task = progress.add_task("rescoring leads", total=None)
        report = activate_model(
            engine,
            scoring_model,
            created_by=by,
            on_total=lambda n: progress.update(task, total=n),
            progress=lambda n: progress.advance(task, n),
        )
    render.console.print(
        f"model `{scoring_model.name}` version {scoring_model.version} is active (stored as "
        f"#{report.version_id}); {report.leads} leads rescored, {report.changed} changed stage, "
        f"flag, tier or grade, {report.new_mqls} new MQLs",
        markup=False,
    )


@model_app.command("list")
def model_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The stored model versions: who stored them, when, which is active."""
    from qualify.store.versions import list_versions

    with _engine(db).connect() as conn:
        versions = list_versions(conn)
    if as_json:
        render.print_json([dataclasses.asdict(v) for v in versions])
        return
    for v in versions:
        mark = "*" if v.active else " "
        render.console.print(
            f"{mark} #{v.id} {v.name} version {v.version} ({v.checksum}) "
            f"stored {render.when(v.created_at)} by {v.created_by}",
            markup=False,
        )


@app.command()
def refresh(db: DbOption = None) -> None:
    """Rescore every lead as of now: windows close, points decay and expire as time passes."""
    from qualify.service.rescore import rescore_all

    with _progress() as progress:
        task = progress.add_task("refreshing leads", total=None)
        report = rescore_all(
            _engine(db),
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
        change = record_action(_engine(db), lead, action, actor=by, reason=reason, details=details)
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


@app.command()
def demo(
    db: DbOption = None,
    leads_count: Annotated[int, typer.Option("--leads", help="How many leads to generate.")] = 5200,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 7,
    top: Annotated[int, typer.Option(help="How many top MQLs to show.")] = 10,
) -> None:
    """Build a demo store: generated leads and 90 days of events, scored and qualified."""
    from qualify.cli.demo import run_demo

    run_demo(db, leads_count=leads_count, seed=seed, top=top, progress=_progress)


@app.command()
def version() -> None:
    """Print Qualify's version."""
    render.console.print(__version__)


def main() -> None:
    """Entry point: run the app, turning Qualify's errors into one clear line and exit 2."""
    try:
        app()
    except ModelError as exc:
        render.err.print(exc.render(), markup=False)
        sys.exit(2)
    except (QualifyError, IngestError) as exc:
        render.err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except SQLAlchemyError as exc:  # the database refused: say so in one line
        reason = getattr(exc, "orig", None) or exc
        render.err.print(f"error: the database refused the operation: {reason}", markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
