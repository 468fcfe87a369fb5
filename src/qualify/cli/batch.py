"""`qualify batch`: a model compiled into a relational plan, run on a batch engine."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from qualify.cli import render
from qualify.cli.shared import (
    JsonOption,
    app,
    as_of_time,
    bulk,
    engine_for,
    progress_bar,
    read_model,
    report_problems,
)
from qualify.model import ScoringModel


class Engine(StrEnum):
    duckdb = "duckdb"
    postgres = "postgres"
    spark = "spark"


@app.command()
def batch(
    model: Annotated[Path, typer.Argument(help="The scoring model (YAML).")],
    events: Annotated[
        list[Path] | None,
        typer.Option(
            help="Messages: Segment JSON Lines, or a .csv or .parquet table (columns as in "
            "`qualify ingest`, see --map), gzipped or not; or a folder of such files (an "
            "export's part files, taken in the order of their names). Give it again for "
            "more: all count as one history, in the order given. Or use --db."
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="Score the leads of this store (SQLAlchemy URL) instead of a file."),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="Where the plan runs: duckdb (embedded), postgres (a PostgreSQL store given "
            "by --db, in place) or spark."
        ),
    ] = Engine.duckdb,
    spark_master: Annotated[
        str,
        typer.Option(envvar="QUALIFY_SPARK_MASTER", help="Spark's master URL (--engine spark)."),
    ] = "local[*]",
    as_of: Annotated[
        str | None, typer.Option(help="Score as of this time (ISO-8601); default: now.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write every lead's scores to a .parquet or .csv file.")
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="CSV/Parquet column to message field, e.g. Email=userId (repeatable).",
        ),
    ] = None,
    message_type: Annotated[
        str | None,
        typer.Option("--type", help="Message type of CSV/Parquet rows without a `type`."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes decoding a JSON Lines or Parquet --events file at once "
            "(default: one per CPU; 1 for none besides this one).",
        ),
    ] = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="Rows in the table (not for --json/--out).")] = 20,
    write_back: Annotated[
        bool,
        typer.Option(
            "--write-back",
            help="With --db: store the scores in the store's leads, ledger and stage history "
            "(one transaction per chunk of leads). MODEL must be the store's active model.",
        ),
    ] = False,
) -> None:
    """Score in bulk, a file of messages or a store's leads: the model compiled into one
    relational plan.

    Results equal the live engine's (a differential test keeps them so), with one points
    column per rule. Bad lines are reported with their line number and skipped (exit 1).
    With --db the store is only read, unless --write-back stores the scores (as `qualify
    refresh` would, in bulk).
    """
    from qualify.batch.engine import BatchRun, check_output, open_backend, run_store
    from qualify.batch.inputs import event_files
    from qualify.errors import QualifyError
    from qualify.service.files import Problems

    if write_back and db is None:
        raise QualifyError("--write-back stores scores in a store: give --db URL")
    if out is not None and as_json:
        raise QualifyError("--json prints the scores and --out writes them to a file: use one")
    if not events:
        events = None
    if (events is None) == (db is None):
        raise QualifyError("say what to score: --events FILE.jsonl, or --db URL for a store")
    if engine is Engine.postgres and db is None:
        raise QualifyError(
            "--engine postgres scores a PostgreSQL store in place: give --db postgresql://…"
        )
    if out is not None:
        check_output(out)
    if write_back and as_of is not None:
        raise QualifyError(
            "--write-back scores the store as of now; leave out --as-of (or write the "
            "scores as of another time to a file with --out)"
        )
    from qualify.service.files import ColumnMapping

    columns = ColumnMapping.parse(mapping or [], message_type)
    files = event_files(events) if events else None
    scoring_model = read_model(model)
    imported = time.time()  # a table's rows without a time take it, as `qualify ingest` does
    moment = as_of_time(as_of)  # by default now, so not before `imported`
    problems: dict[Path, Problems] = {}
    started = time.perf_counter()
    if files is not None:  # before the engine starts: the decoding workers fork this process
        inputs = _file_inputs(scoring_model, files, moment, imported, problems, columns, jobs)
    backend = open_backend(engine.value, url=db, master=spark_master)
    if files is not None:
        run = BatchRun.of_inputs(scoring_model, backend, inputs, moment)
    else:
        store = engine_for(db)
        version_id = _active_version_of(store, scoring_model) if write_back else None
        with bulk():
            run = run_store(scoring_model, backend, store, moment)
            if version_id is not None:
                _write_back(store, run, version_id, moment)
                if out is None and not as_json:
                    return
    for path, found in problems.items():
        report_problems(path, found)
    if out is not None:
        written = run.write(out)
        live = f" ({run.live_leads:,} by the live engine)" if run.live_leads else ""
        render.err.print(
            f"{engine.value}: {written:,} leads{live} in {time.perf_counter() - started:.1f}s"
            f" → {out}"
        )
    elif as_json:
        sys.stdout.buffer.writelines(
            orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in run.rows()
        )
    else:
        _table(run.rows(), limit)
    if any(found.items for found in problems.values()):
        raise typer.Exit(1)


def _file_inputs(
    model: ScoringModel,
    files: list[Any],
    moment: float,
    imported: float,
    problems: dict[Path, Any],
    columns: Any,
    jobs: int | None,
) -> Any:
    from qualify.batch.inputs import from_files
    from qualify.service.files import Problems, open_parquet

    with progress_bar() as progress, bulk():
        # one bar for the file being read (an export may hold thousands), and one counting
        # the files when there are several
        overall = progress.add_task(f"{len(files):,} files", total=len(files))
        progress.update(overall, visible=len(files) > 1)
        current: list[Any] = []

        def told(file: Any) -> Any:
            if file.kind == "parquet":
                total = open_parquet(file.path, columns).metadata.num_rows
            else:
                total = file.path.stat().st_size
            for task in current:
                progress.remove_task(task)
                progress.advance(overall)
            task = progress.add_task(f"reading {file.path.name}", total=total or None)
            current[:] = [task]
            return lambda done: progress.update(task, completed=done)

        inputs = from_files(
            model,
            files,
            moment,
            lambda file: problems.setdefault(file.path, Problems()),
            columns,
            received_at=imported,
            workers=jobs,
            progress=told,
        )
        progress.update(overall, completed=len(files))
        return inputs


def _active_version_of(store: Any, model: ScoringModel) -> int:
    """The stored version the scores are written under: write-back stores scores of the
    active model, so MODEL must be that model. Read once, before scoring: were another
    model activated meanwhile, the leads would be rescored by it as they are touched."""
    from qualify.errors import QualifyError
    from qualify.store.versions import active_version

    with store.connect() as conn:
        version_id, active = active_version(conn)
    if active.checksum != model.checksum:
        raise QualifyError(
            f"--write-back stores scores of the store's active model (`{active.name}` version "
            f"{active.version}), and this file is another model: to make it active and "
            "rescore in bulk, run `qualify model activate MODEL --engine duckdb`"
        )
    return version_id


def _write_back(store: Any, run: Any, version_id: int, moment: float) -> None:
    from qualify.core.scoring import CompiledModel
    from qualify.service.rescore import write_back

    scores = run.table()
    with progress_bar() as progress:
        task = progress.add_task("writing back", total=None)
        report = write_back(
            store,
            CompiledModel(run.model),
            version_id,
            scores,
            remodel=False,
            read_at=moment,
            now=moment,
            on_total=lambda n: progress.update(task, total=n),
            progress=lambda n: progress.advance(task, n),
        )
    render.err.print(
        f"{report.leads:,} leads written back, {report.changed:,} changed stage, flag, tier "
        f"or grade, {report.new_mqls:,} new MQLs"
    )


def _table(rows: list[dict], limit: int) -> None:
    from rich.table import Table

    ranked = sorted(rows, key=lambda r: (-r["score"], r["lead_id"]))
    mqls = sum(1 for r in rows if r["mql"])
    table = Table(
        title=f"{len(rows)} leads, {mqls} MQLs (top {min(limit, len(rows))})",
        title_justify="left",
    )
    for name in ("lead", "score", "fit", "engagement", "mql", "pql", "tier", "grade", "rules"):
        table.add_column(name)
    for r in ranked[:limit]:
        held = [
            f"{k.split(':', 1)[1]} {render.points(v)}"
            for k, v in r.items()
            if k.startswith("rule:") and v is not None
        ]
        table.add_row(
            r["lead_id"],
            render.points(r["score"]),
            render.points(r["fit"]),
            render.points(r["engagement"]),
            "yes" if r["mql"] else "",
            "yes" if r["pql"] else "",
            r["tier"] or "",
            r["grade"] or "",
            ", ".join(held),
        )
    render.console.print(table)
