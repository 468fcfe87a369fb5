"""Running a compiled plan on a batch engine: DuckDB (embedded), PostgreSQL, Apache Spark.

DuckDB and Spark receive the inputs as tables (Arrow) and call Python for the rare values
SQL cannot judge. PostgreSQL scores a store *in place*: the plan reads the store's own
`events` table, with only the profiles (one row per lead, built in Python from the lead rows'
traits and stamps) loaded beside it; PostgreSQL cannot call Python, so the few leads holding
such values are scored by the live engine from their stored events, and their rows replaced.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from qualify.errors import QualifyError
from qualify.model.scoring_model import ScoringModel

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa
    from sqlalchemy import Engine as SqlEngine

    from qualify.batch.dialects import Dialect
    from qualify.batch.inputs import BatchInputs
    from qualify.core.scoring import LeadScore

__all__ = [
    "ENGINES",
    "Backend",
    "BatchRun",
    "check_output",
    "live_rows",
    "open_backend",
    "run_duckdb",
    "run_store",
    "score_from_row",
]

ENGINES = ("duckdb", "postgres", "spark")
SCORE_COLUMNS = ("lead_id", "fit", "engagement", "score", "mql", "pql", "tier", "grade")


def _ibis() -> Any:
    try:
        import ibis
    except ImportError:  # pragma: no cover - the `batch` extra is part of the test extras
        raise QualifyError(
            "batch scoring needs the `batch` extra: pip install 'qualify[batch]'"
        ) from None
    return ibis


class Backend:
    """One engine's connection, and how inputs get into it."""

    name = "duckdb"

    def __init__(self) -> None:
        self.connection: Any = _ibis().duckdb.connect()

    @property
    def dialect(self) -> Dialect:
        from qualify.batch.dialects import DIALECTS

        return DIALECTS[self.name]

    def load(self, inputs: BatchInputs, model: ScoringModel) -> tuple[ir.Table, ir.Table]:
        """The inputs as two tables of the engine (events, profiles)."""
        return self._table("events", inputs.events), self.load_profiles(inputs.profiles, model)

    def load_profiles(self, profiles: pa.Table, model: ScoringModel) -> ir.Table:
        """Profiles as a table; where the engine cannot call Python, with every fit rule
        judged here by the live engine's own test (a profile is one row per lead, and
        `matches` is Python's regex): exact, and cheap next to the events."""
        if not self.dialect.python_udfs and model.fit:
            profiles = _judge_fit(model, profiles)
        return self._table("profiles", profiles)

    def _table(self, name: str, data: pa.Table) -> ir.Table:
        return self.connection.create_table(_unique(name), data, temp=True)

    def collect(self, table: ir.Table) -> pa.Table:
        return table.to_pyarrow()

    def stored_events(
        self, rows: pa.RecordBatchReader, keys: Collection[str], *, parsed: bool = False
    ) -> ir.Table:
        """A store's events (`stored_rows`) as the plan's events relation, in a table of
        the engine's own: DuckDB takes the names and properties out of each stored message
        itself (`duckdb_stored_events`), unless PostgreSQL already did (`parsed`)."""
        from qualify.batch.dialects import duckdb_stored_events, duckdb_stored_messages

        connection, raw, parsed_name = self.connection, _unique("stored"), _unique("messages")
        connection.con.register(raw, rows)
        try:  # each relation computed once, into a temporary table
            if parsed:
                return connection.create_table(_unique("events"), connection.table(raw), temp=True)
            messages = connection.create_table(
                parsed_name, duckdb_stored_messages(connection.table(raw)), temp=True
            )
        finally:
            connection.con.unregister(raw)
        events = duckdb_stored_events(messages, keys)
        events = connection.create_table(_unique("events"), events, temp=True)
        connection.drop_table(parsed_name)
        return events

    def keep(self, table: ir.Table) -> ir.Table:
        """A relation the plan uses many times, as the engine best holds it. DuckDB is
        given it as it is: there the plan already runs within 1.6× of a hand-written
        query of the same model (docs/benchmarks.md)."""
        return table

    def close(self) -> None:
        self.connection.disconnect()


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise QualifyError(
                f"--engine postgres scores a PostgreSQL store in place; {url!r} is not one "
                "(give --db postgresql://…, or use --engine duckdb)"
            )
        import psycopg  # what Ibis connects to PostgreSQL with

        self.url = url
        try:
            self.connection = _ibis().postgres.connect(
                host=parsed.host or "localhost",
                port=parsed.port or 5432,
                user=parsed.username,
                password=parsed.password,
                database=parsed.database,
            )
        except psycopg.OperationalError as exc:
            raise QualifyError(
                f"--engine postgres cannot connect to {parsed.render_as_string()}: {exc}"
            ) from None
        # Rules filter events on JSON values, whose selectivity the planner cannot know: it
        # estimates one row for such a relation and joins a window rule's hits to themselves
        # by nested loops. Measured on 1.26 million stored messages: 487 s → 12.5 s without.
        self.connection.raw_sql("SET enable_nestloop = off").close()
        # The plan is one statement of some 260 expressions: compiling them took 3–4.5 s of
        # its 7–11 s, more than they saved.
        self.connection.raw_sql("SET jit = off").close()
        self._check_temporary()

    def _check_temporary(self) -> None:
        """Every plan keeps its events in temporary tables (`keep`). A role refused them
        would fail half-way with PostgreSQL's bare "permission denied", so ask first and
        say what to grant."""
        cursor = self.connection.raw_sql(
            "SELECT current_user, current_database(), "
            "has_database_privilege(current_database(), 'TEMPORARY')"
        )
        user, database, allowed = cursor.fetchone()
        cursor.close()
        if not allowed:
            raise QualifyError(
                f"--engine postgres keeps the events it scores in temporary tables, and role "
                f"{user!r} may not create them in database {database!r}: an administrator can "
                f'allow it with GRANT TEMPORARY ON DATABASE "{database}" TO "{user}"; or score '
                "with --engine duckdb"
            )

    def keep(self, table: ir.Table) -> ir.Table:
        """Stored as a temporary table, with statistics. PostgreSQL inlines a relation into
        each of its uses, and a column into each expression that reads it, so each value a
        rule reads parsed the stored message again: on 1.26 million stored messages the
        plan and the rare values' query took 34.8 and 26.2 s reading `events` in place, and
        13.0 and 3.5 s over the kept tables (made in 8 s), before JIT was turned off. Both
        queries also read the same events now; new messages could arrive between them."""
        import sqlglot.expressions as sge

        name = sge.to_table(_unique("events"))
        # Ibis hands JSON out as text; stored as such, every use would parse it again.
        columns = [
            sge.Cast(this=sge.column(c, quoted=True), to=sge.DataType.build("jsonb")).as_(c)
            if kind.is_json()
            else sge.column(c, quoted=True)
            for c, kind in table.schema().items()
        ]
        query = sge.select(*columns).from_(
            self.connection.compiler.to_sqlglot(table).subquery("kept")
        )
        temporary = sge.Properties(expressions=[sge.TemporaryProperty()])
        create = sge.Create(this=name, kind="TABLE", expression=query, properties=temporary)
        for statement in (create, sge.Analyze(this=name)):
            self.connection.raw_sql(statement.sql(dialect="postgres")).close()
        return self.connection.table(name.name)

    def stored_events(
        self, rows: pa.RecordBatchReader, keys: Collection[str], *, parsed: bool = False
    ) -> ir.Table:  # pragma: no cover - a bug: run_store has PostgreSQL read in place
        raise QualifyError("the postgres engine reads its store's events in place")

    def store_events(self) -> ir.Table:
        """The store's `events` table, in place, as the plan's events relation."""
        from qualify.batch.dialects import pg_stored_events

        return pg_stored_events(self.connection.table("events"))


class SparkBackend(Backend):
    name = "spark"

    def __init__(self, master: str) -> None:
        try:
            from pyspark.sql import SparkSession
        except ImportError:  # pragma: no cover - the `spark` extra is part of the test extras
            raise QualifyError(
                "the spark engine needs PySpark: pip install 'qualify[spark]' (and Java 17+)"
            ) from None
        # Spark's Python workers call the live engine's tests (rare values): they must run
        # this interpreter, where qualify is installed (on a cluster: install it there too).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            SparkSession.builder.master(master)
            .appName("qualify batch")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
        )
        cores = local_cores(master)
        if cores is not None:
            # Spark's default of 200 shuffle partitions is sized for a cluster: on one
            # machine each of the plan's dozens of shuffles wrote 200 pieces per task
            # (240,000 events, 2 cores: 13.5 s a plan with 200, 9.7–10.9 s with 2–4).
            builder = builder.config("spark.sql.shuffle.partitions", str(2 * cores))
        self.session = builder.getOrCreate()
        self.connection = _ibis().pyspark.connect(self.session)

    def _table(self, name: str, data: pa.Table) -> ir.Table:
        """The rows as a checkpointed DataFrame of one partition per core. A DataFrame made
        from local data carries that data inside its plan, and Spark's analyzer compares
        and copies the plan many times over for a plan this size: 9 s of analysis for
        240,000 events, 0.5 s once the rows live in Spark's block store. And Spark cuts
        Arrow data into a partition per 10,000 rows, each a task in every stage that
        calls Python (the rare values' tests): on the demo file's 1.2 million events
        122 partitions took 117 s a plan, 2 took 36 s (`local[2]`)."""
        unique = _unique(name)
        frame = self.session.createDataFrame(data)
        frame = frame.coalesce(self.session.sparkContext.defaultParallelism)
        frame.localCheckpoint().createOrReplaceTempView(unique)
        return self.connection.table(unique)

    def stored_events(
        self, rows: pa.RecordBatchReader, keys: Collection[str], *, parsed: bool = False
    ) -> ir.Table:
        """The relation PostgreSQL computed from its stored messages, or, from a SQLite
        store, the one DuckDB computes from them in this process (`Backend.stored_events`):
        Spark's JSON functions do not read a message as the live engine does, DuckDB's
        are made to, and either is faster than decoding each message in Python."""
        if parsed:
            return self._table("events", rows.read_all())
        from qualify.batch.inputs import STORED_EVENTS_SCHEMA

        duckdb = Backend()
        try:
            events = duckdb.collect(duckdb.stored_events(rows, keys))
        finally:
            duckdb.close()
        return self._table("events", events.cast(STORED_EVENTS_SCHEMA))

    def keep(self, table: ir.Table) -> ir.Table:
        """Cached by Spark (released when the plan is): Spark computes a DataFrame again
        for each of its uses, JSON parsing and Python fallbacks included."""
        return table.cache()

    def close(self) -> None:
        pass  # the session is the process's; a cluster keeps running


def local_cores(master: str) -> int | None:
    """The cores a local Spark master runs on (`local`, `local[4]`, `local[*]`,
    `local[4,2]`); None for a cluster's master."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if found is None:
        return None
    count = found.group(1)
    if count is None:
        return 1
    if count == "*":
        return os.cpu_count() or 1
    return max(1, int(count))


def open_backend(engine: str, *, url: str | None = None, master: str = "local[*]") -> Backend:
    """A connection to `engine` (`url`: the PostgreSQL store; `master`: Spark's master)."""
    if engine == "duckdb":
        return Backend()
    if engine == "postgres":
        if url is None:
            raise QualifyError(
                "--engine postgres scores a PostgreSQL store in place: give --db postgresql://…"
            )
        return PostgresBackend(url)
    if engine == "spark":
        return SparkBackend(master)
    raise QualifyError(f"unknown batch engine {engine!r}: choose one of {', '.join(ENGINES)}")


LiveInputs = Callable[[set[str]], "BatchInputs"]


class BatchRun:
    """A plan on an engine, ready to write or read."""

    def __init__(
        self,
        model: ScoringModel,
        backend: Backend,
        events: ir.Table,
        profiles: ir.Table,
        as_of: float,
        live_inputs: LiveInputs | None = None,
    ) -> None:
        from qualify.batch.plan import compile_plan

        self.model = model
        self.backend = backend
        self.as_of = as_of
        self.plan = compile_plan(model, events, profiles, as_of, backend.dialect, backend.keep)
        if self.plan.rare is not None and live_inputs is None:  # pragma: no cover - a bug
            raise QualifyError(f"the {backend.name} engine needs the live engine beside it")
        self.live_inputs = live_inputs
        self.live_leads = 0  # leads scored by the live engine (rare values)

    @classmethod
    def of_inputs(
        cls, model: ScoringModel, backend: Backend, inputs: BatchInputs, as_of: float
    ) -> BatchRun:
        events, profiles = backend.load(inputs, model)
        return cls(model, backend, events, profiles, as_of, inputs.only)

    def table(self) -> pa.Table:
        """Every lead's scores, by lead id, as an Arrow table."""
        import pyarrow as pa

        scored = self.backend.collect(self.plan.table.order_by("lead_id"))
        if self.plan.rare is None:
            return scored
        rare = set(self.backend.collect(self.plan.rare).column("lead_id").to_pylist())
        self.live_leads = len(rare)
        if not rare:
            return scored
        assert self.live_inputs is not None
        exact = {r["lead_id"]: r for r in live_rows(self.model, self.live_inputs(rare), self.as_of)}
        rows = [exact.get(r["lead_id"], r) for r in scored.to_pylist()]
        return pa.Table.from_pylist(rows, schema=scored.schema)

    def rows(self) -> list[dict[str, Any]]:
        """Every lead's scores, by lead id."""
        return self.table().to_pylist()  # type: ignore[no-any-return]

    def write(self, out: Path) -> int:
        """Write the scores to `out` (.parquet or .csv); the number of leads written."""
        check_output(out)
        if self.backend.name == "duckdb":  # DuckDB writes the file itself, streaming
            table = self.plan.table.order_by("lead_id")
            # the rows are counted in the file written: counting the plan ran it again
            if out.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq

                table.to_parquet(out)
                return int(pq.read_metadata(out).num_rows)
            import pyarrow.csv as pc

            table.to_csv(out)
            return int(pc.read_csv(out).num_rows)
        scores = self.table()
        if out.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(scores, out)
        else:
            import pyarrow.csv as pc

            pc.write_csv(scores, out)
        return scores.num_rows


def run_store(model: ScoringModel, backend: Backend, store: SqlEngine, as_of: float) -> BatchRun:
    """A plan over a store's leads. On PostgreSQL it reads the store's `events` table in
    place; other engines read the events relation PostgreSQL computes from a PostgreSQL
    store, or the one DuckDB computes from a SQLite store's events table (`stored_rows`,
    through ADBC). Only a store ADBC cannot open (`stored_source`) has its events decoded
    in Python. Profiles (one row per lead) are built in Python from the lead rows' traits
    and stamps."""
    from qualify.batch.inputs import (
        BatchInputs,
        from_store,
        store_events,
        store_profiles,
        stored_rows,
        stored_source,
    )
    from qualify.batch.plan import event_keys

    if not isinstance(backend, PostgresBackend) and stored_source(store) is None:
        with store.connect() as conn:
            inputs = from_store(model, conn, as_of)
        return BatchRun.of_inputs(model, backend, inputs, as_of)
    with store.connect() as conn:
        profiles = store_profiles(model, conn, as_of)
    if isinstance(backend, PostgresBackend):
        events = backend.store_events()
    else:
        with stored_rows(store) as rows:
            parsed = store.dialect.name == "postgresql"  # the server parsed its jsonb
            events = backend.stored_events(rows, event_keys(model), parsed=parsed)

    def live_inputs(ids: set[str]) -> BatchInputs:
        with store.connect() as conn:
            events = store_events(model, conn, ids)
        return BatchInputs(events, profiles).only(ids)

    return BatchRun(
        model,
        backend,
        events,
        backend.load_profiles(profiles, model),
        as_of,
        live_inputs,
    )


def live_rows(model: ScoringModel, inputs: BatchInputs, as_of: float) -> list[dict[str, Any]]:
    """The live engine's scores of the leads in `inputs`, as plan rows: the exact path for
    leads an engine cannot score itself."""
    from qualify.batch.plan import RULE_PREFIX
    from qualify.core.activity import ActivityEvent
    from qualify.core.scoring import CompiledModel, score_state

    compiled = CompiledModel(model)
    profiles = dict(
        zip(
            inputs.profiles.column("lead_id").to_pylist(),
            (orjson.loads(p) for p in inputs.profiles.column("profile").to_pylist()),
            strict=True,
        )
    )
    states = {lead: compiled.new_state() for lead in profiles}
    columns = [inputs.events.column(c).to_pylist() for c in ("lead_id", "message_id", "name", "ts")]
    texts = inputs.events.column("properties").to_pylist()
    for lead, message_id, name, ts, properties in zip(*columns, texts, strict=True):
        if ts > as_of:
            continue
        state = states.get(lead)
        if state is None:
            state = states[lead] = compiled.new_state()
        event = ActivityEvent(message_id, "track", name, ts, properties=orjson.loads(properties))
        compiled.apply(state, event)
    rows = []
    for lead, state in states.items():
        result = score_state(compiled, profiles.get(lead, {}), state, as_of, explain=True)
        points = result.rule_points()
        row: dict[str, Any] = {c: getattr(result, c) for c in SCORE_COLUMNS[1:]}
        row["lead_id"] = lead
        row.update({RULE_PREFIX + name: points.get(name) for name in model.rule_names})
        rows.append(row)
    return rows


def score_from_row(model: ScoringModel, row: dict[str, Any]) -> LeadScore:
    """A plan row (one lead) as the live engine's `LeadScore`: the totals, flags, tier and
    grade, and one contribution per rule that holds, with its points (what the ledger and
    the stage history record; the events behind them are not part of a plan row)."""
    from qualify.batch.plan import RULE_PREFIX
    from qualify.core.scoring import Contribution, LeadScore

    contributions = []
    for aspect, rules in (("fit", model.fit), ("engagement", model.engagement)):
        for rule in rules:
            points = row[RULE_PREFIX + rule.name]
            if points is not None:
                contributions.append(Contribution(rule.name, aspect, points, points))
    return LeadScore(
        fit=row["fit"],
        engagement=row["engagement"],
        score=row["score"],
        mql=bool(row["mql"]),
        pql=bool(row["pql"]),
        tier=row["tier"],
        grade=row["grade"],
        contributions=tuple(contributions),
    )


def _judge_fit(model: ScoringModel, profiles: pa.Table) -> pa.Table:
    import pyarrow as pa

    from qualify.batch.plan import FIT_PREFIX
    from qualify.core.predicates import compile_predicate

    docs = [orjson.loads(p) for p in profiles.column("profile").to_pylist()]
    for rule in model.fit:
        test = compile_predicate(rule.when)
        holds = pa.array([test(d) for d in docs], type=pa.bool_())  # typed when empty
        profiles = profiles.append_column(FIT_PREFIX + rule.name, holds)
    return profiles


def _unique(name: str) -> str:
    return f"qualify_{name}_{uuid.uuid4().hex[:12]}"


def check_output(out: Path) -> None:
    """Refuse an output file the engine cannot write, before any work is done."""
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise QualifyError(
            f"--out {out}: write scores to a .parquet or .csv file (chosen by its suffix)"
        )
    if out.is_dir():
        raise QualifyError(f"--out {out} is a folder: name a file in it")
    folder = out.absolute().parent
    if not folder.is_dir():
        raise QualifyError(f"--out {out}: there is no folder {folder} to write it in")
    if not os.access(folder, os.W_OK):
        raise QualifyError(f"--out {out}: the folder {folder} cannot be written to")


def run_duckdb(model: ScoringModel, inputs: BatchInputs, as_of: float) -> BatchRun:
    """Compile `model` and prepare it on DuckDB over `inputs`, as of `as_of`."""
    return BatchRun.of_inputs(model, Backend(), inputs, as_of)
