"""What every command shares: the Typer apps, common options and small helpers."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import contextlib
import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qualify.cli import render
from qualify.core.activity import parse_time
from qualify.errors import MessageError, QualifyError
from qualify.model import ScoringModel, load_model

if TYPE_CHECKING:  # commands import the store when they use it: `qualify score` starts fast
    from sqlalchemy import Engine

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
WebhookBaseDelay = Annotated[
    float, typer.Option(help="First webhook retry after about this many seconds (doubling).")
]
WebhookMaxAttempts = Annotated[
    int, typer.Option(help="Attempts before a webhook delivery is dead (until replayed).")
]


def engine_for(db: str | None, *, create: bool = False) -> "Engine":
    """The store; only `demo` and `model activate` may start a new one."""
    from qualify.store import open_engine

    return open_engine(db, create=create)


def read_model(path: Path) -> ScoringModel:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QualifyError(f"no model file {path}: give the path of a YAML model") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QualifyError(f"cannot read {path}: {exc}") from None
    return load_model(text, str(path))


def progress_bar() -> Progress:
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
def bulk() -> Iterator[None]:
    """Bulk work keeps hundreds of thousands of small objects alive (rule states), and the
    cyclic garbage collector would rescan them again and again: measured, that costs a third
    of `qualify score`'s time. Our hot path creates no reference cycles, so collect rarely."""
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def as_of_time(value: str | None) -> float:
    if value is None:
        return time.time()
    try:
        return parse_time(value)
    except MessageError:
        raise QualifyError(
            f"--as-of {value!r} is not an ISO-8601 time, e.g. 2026-03-01T00:00:00Z"
        ) from None


def open_file(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise QualifyError(f"no such file: {path}") from None
    except OSError as exc:
        raise QualifyError(f"cannot read {path}: {exc}") from None


def report_problems(path: Path, problems: Any, *, limit: int = 20) -> None:
    for problem in problems.items[:limit]:
        render.err.print(f"{path}:{problem.line}: skipped: {problem.reason}", markup=False)
    if len(problems.items) > limit:
        render.err.print(
            f"... and {len(problems.items) - limit} more bad lines in {path}", markup=False
        )
