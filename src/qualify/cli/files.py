"""Commands on message files: score (stateless) and ingest (into the store)."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from qualify.cli import render
from qualify.cli.shared import (
    DbOption,
    JsonOption,
    app,
    as_of_time,
    bulk,
    engine_for,
    open_file,
    progress_bar,
    read_model,
    report_problems,
)
from qualify.core.activity import ActivityEvent
from qualify.core.scoring import CompiledModel, LeadScore
from qualify.errors import QualifyError


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

    if events.suffix.lower() in (".csv", ".parquet"):
        raise QualifyError(
            f"qualify score reads Segment JSON Lines; score a {events.suffix} table with "
            f"`qualify batch {model} --events {events}` (the same scores, columns mapped "
            "as `qualify ingest` maps them)"
        )
    compiled = CompiledModel(read_model(model))
    moment = as_of_time(as_of)
    problems = Problems()
    with open_file(events) as lines, bulk():
        results = score_events(compiled, read_jsonl(lines, problems), moment, explain=as_json)
        if as_json:
            out = sys.stdout.buffer
            for lead_id, result, _profile in results:
                out.write(_score_line(lead_id, result))
            out.flush()
        else:
            ranked = sorted(
                ((r.score, lead_id, r) for lead_id, r, _ in results),
                reverse=True,
                key=lambda item: (item[0], item[1]),
            )
            _score_table(ranked, limit)
    report_problems(events, problems)
    if problems.items:
        raise typer.Exit(1)


def _score_line(lead_id: str, r: LeadScore) -> bytes:
    """One lead as a JSON line: `LeadScore.to_dict` with the lead first. orjson writes the
    contributions (dataclasses) itself, which halves the cost for a large file."""
    line = {
        "lead": lead_id,
        "fit": r.fit,
        "engagement": r.engagement,
        "score": r.score,
        "mql": r.mql,
        "pql": r.pql,
        "tier": r.tier,
        "grade": r.grade,
        "contributions": r.contributions,
    }
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


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


@app.command()
def ingest(
    files: Annotated[
        list[Path],
        typer.Argument(help="Segment JSON Lines (.jsonl), CSV or Parquet files (by suffix)."),
    ],
    db: DbOption = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="CSV or Parquet column to message field, e.g. Email=userId, "
            "Industry=traits.industry (repeatable).",
        ),
    ] = None,
    message_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="Message type of table rows (default: track if an `event` column is "
            "mapped, else identify).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Messages per transaction.")] = 500_000,
) -> None:
    """Ingest message files into the store: events, scores, ledger and stage changes.

    Bad lines are reported with their line number and skipped; the rest is ingested and the
    exit code is 1. Each batch is committed before the next is read.
    """
    from qualify.service.files import (
        ColumnMapping,
        Problems,
        read_csv,
        read_jsonl,
        read_parquet,
    )
    from qualify.service.ingest import Ingestor, IngestReport

    column_mapping = ColumnMapping.parse(mapping or [], message_type)
    for path in files:
        if not path.is_file():
            raise QualifyError(f"no such file: {path}")
    ingestor = Ingestor(engine_for(db), batch_size=batch_size)
    total = IngestReport()
    skipped = 0
    for path in files:
        problems = Problems()
        size = path.stat().st_size if path.exists() else 0
        with progress_bar() as progress, open_file(path) as raw, bulk():
            task = progress.add_task(f"ingesting {path.name}", total=size or None)
            suffix = path.suffix.lower()
            if suffix == ".csv":
                import io

                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                messages: Iterator[ActivityEvent] = read_csv(
                    text, column_mapping, problems, received_at=time.time()
                )
            elif suffix == ".parquet":
                messages = read_parquet(path, column_mapping, problems, received_at=time.time())
            else:
                messages = read_jsonl(raw, problems, keep_raw=True)
            report = ingestor.ingest(
                messages,
                progress=lambda _n, task=task: progress.update(task, completed=raw.tell()),
            )
        total.add(report)
        skipped += len(problems.items)
        report_problems(path, problems)
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
