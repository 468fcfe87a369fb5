"""Running a compiled plan on DuckDB (embedded, the default batch engine).

The inputs are registered as tables of an in-memory DuckDB database, the plan runs there
(on every core), and results go to a Parquet or CSV file, or back to the caller as rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qualify.errors import QualifyError
from qualify.model.scoring_model import ScoringModel

if TYPE_CHECKING:
    from qualify.batch.inputs import BatchInputs

__all__ = ["BatchRun", "check_output", "run_duckdb"]


def _ibis() -> Any:
    try:
        import ibis
    except ImportError:  # pragma: no cover - the `batch` extra is part of the test extras
        raise QualifyError(
            "batch scoring needs the `batch` extra: pip install 'qualify[batch]'"
        ) from None
    return ibis


class BatchRun:
    """A plan on DuckDB, ready to write or read."""

    def __init__(self, model: ScoringModel, inputs: BatchInputs, as_of: float) -> None:
        ibis = _ibis()
        from qualify.batch.plan import compile_plan

        self.connection = ibis.duckdb.connect()
        events = self.connection.create_table("events", inputs.events)
        profiles = self.connection.create_table("profiles", inputs.profiles)
        self.plan = compile_plan(model, events, profiles, as_of)
        self.events = inputs.events.num_rows

    def rows(self) -> list[dict[str, Any]]:
        """Every lead's scores, by lead id."""
        table = self.plan.table.order_by("lead_id")
        return table.to_pyarrow().to_pylist()  # type: ignore[no-any-return]

    def write(self, out: Path) -> int:
        """Write the scores to `out` (.parquet or .csv); the number of leads written."""
        check_output(out)
        table = self.plan.table.order_by("lead_id")
        if out.suffix.lower() == ".parquet":
            table.to_parquet(out)
        else:
            table.to_csv(out)
        return int(table.count().execute())


def check_output(out: Path) -> None:
    """Refuse an output file the engine cannot write, before any work is done."""
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise QualifyError(
            f"--out {out}: write scores to a .parquet or .csv file (chosen by its suffix)"
        )


def run_duckdb(model: ScoringModel, inputs: BatchInputs, as_of: float) -> BatchRun:
    """Compile `model` and prepare it on DuckDB over `inputs`, as of `as_of`."""
    return BatchRun(model, inputs, as_of)
