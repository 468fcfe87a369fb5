"""Commands on model files and stored model versions: check, schema, model activate|list."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qualify.cli import render
from qualify.cli.shared import (
    DbOption,
    JsonOption,
    app,
    bulk,
    engine_for,
    model_app,
    progress_bar,
    read_model,
)
from qualify.errors import ModelError, QualifyError
from qualify.model import json_schema

if TYPE_CHECKING:  # the commands import the service lazily: `qualify check` starts fast
    from sqlalchemy import Engine

    from qualify.service.rescore import BulkEngine


class RescoreEngine(StrEnum):
    live = "live"
    duckdb = "duckdb"
    postgres = "postgres"
    spark = "spark"


def check_bulk_engine(bulk: "BulkEngine", engine: "Engine") -> None:
    """Refuse a batch engine that cannot read this store, before anything changes."""
    from importlib.util import find_spec

    if find_spec("ibis") is None:  # pragma: no cover - the test extras include it
        raise QualifyError("batch engines need the `batch` extra: pip install 'qualify[batch]'")
    if bulk.name == "spark" and find_spec("pyspark") is None:  # pragma: no cover - as above
        raise QualifyError("--engine spark needs PySpark: pip install 'qualify[spark]'")
    if bulk.name == "postgres" and engine.dialect.name != "postgresql":
        raise QualifyError(
            "--engine postgres rescores a PostgreSQL store in place; this store is "
            f"{engine.dialect.name}: use --engine duckdb"
        )


@app.command()
def check(
    models: Annotated[list[Path], typer.Argument(help="Model files to validate.")],
) -> None:
    """Validate model files: every problem with file:line:col, a caret, and a suggestion."""
    failed = False
    for path in models:
        try:
            model = read_model(path)
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


@model_app.command("activate")
def model_activate(
    model: Annotated[Path, typer.Argument(help="The scoring model (YAML).")],
    db: DbOption = None,
    by: Annotated[str, typer.Option(help="Who activates it (recorded).")] = "cli",
    rescore_with: Annotated[
        RescoreEngine,
        typer.Option(
            "--engine",
            help="What rescores the leads: the live engine, or a batch engine (faster on a "
            "large store): duckdb, postgres (a PostgreSQL store, in place) or spark.",
        ),
    ] = RescoreEngine.live,
    spark_master: Annotated[
        str,
        typer.Option(envvar="QUALIFY_SPARK_MASTER", help="Spark's master URL (--engine spark)."),
    ] = "local[*]",
) -> None:
    """Store a model as a new version, make it active and rescore every lead."""
    from qualify.service.rescore import BulkEngine, activate_model

    scoring_model = read_model(model)
    engine = engine_for(db, create=True)
    batch_engine = None
    if rescore_with is not RescoreEngine.live:
        batch_engine = BulkEngine(rescore_with.value, spark_master)
        check_bulk_engine(batch_engine, engine)
    with progress_bar() as progress, bulk():
        task = progress.add_task("rescoring leads", total=None)
        report = activate_model(
            engine,
            scoring_model,
            created_by=by,
            on_total=lambda n: progress.update(task, total=n),
            progress=lambda n: progress.advance(task, n),
            bulk=batch_engine,
            on_phase=lambda phase: progress.update(task, description=phase),
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

    with engine_for(db).connect() as conn:
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
