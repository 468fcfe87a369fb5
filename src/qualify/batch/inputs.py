"""The two relations a plan reads, built from Segment messages with the live engine's code.

Identity resolution and profiles depend on the order in which messages arrive (the first
user an anonymous id meets claims it; the latest trait wins), and they are what the live
engine's `LeadBook` already does exactly. So messages pass through a `LeadBook` without
engagement rules — identity, traits, accounts, first touch — while the messages rules can
match are set aside as rows; at the end each row gets the lead its ids resolve to. The plan
then does the heavy part, the rules over those rows, where the data is.

From a store (`from_store`), identity is already resolved: each stored event names its lead,
and each lead row holds its traits with their stamps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import itertools
import os
import pickle
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
import pyarrow as pa

from qualify.batch.jsonl import (
    CHUNK_BYTES,
    Range,
    Record,
    RuleRows,
    chunk_bounds,
    decode_gzipped,
    gzipped_line_at,
    line_at,
    parallel_ranges,
    records_of,
)
from qualify.batch.parquet import ROWS_PER_RANGE
from qualify.core.activity import ActivityEvent, decode_line
from qualify.core.leadbook import Account, LeadBook, LeadRecord, Traits
from qualify.core.scoring import CompiledModel
from qualify.core.state import LeadState
from qualify.errors import QualifyError, StoreError
from qualify.model.scoring_model import ScoringModel
from qualify.service.files import (
    ColumnMapping,
    Problems,
    open_parquet,
    read_csv,
    read_jsonl,
    read_parquet,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = [
    "BatchInputs",
    "EventFile",
    "event_files",
    "from_files",
    "from_jsonl",
    "from_messages",
    "from_parquet",
    "from_store",
    "store_events",
    "store_profiles",
    "stored_rows",
    "stored_source",
]

EVENT_SCHEMA = pa.schema(
    [
        ("lead_id", pa.string()),
        ("message_id", pa.string()),
        ("name", pa.string()),
        ("ts", pa.float64()),
        ("properties", pa.string()),
    ]
)
PROFILE_SCHEMA = pa.schema([("lead_id", pa.string()), ("profile", pa.string())])
# a store's events rows as it holds them (`stored_rows`): the message as its JSON text
STORED_SCHEMA = pa.schema(
    [
        ("lead_id", pa.string()),
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("name", pa.string()),
        ("ts", pa.float64()),
        ("payload", pa.string()),
    ]
)
# the plan's events relation as PostgreSQL computes it from a store (`pg_stored_events`)
STORED_EVENTS_SCHEMA = EVENT_SCHEMA.append(pa.field("rare", pa.bool_()))


@dataclasses.dataclass(frozen=True)
class BatchInputs:
    events: pa.Table
    profiles: pa.Table

    def only(self, lead_ids: Collection[str]) -> BatchInputs:
        """The rows of these leads only."""
        import pyarrow.compute as pc

        wanted = pa.array(sorted(lead_ids), type=pa.string())
        return BatchInputs(
            self.events.filter(pc.is_in(self.events.column("lead_id"), wanted)),
            self.profiles.filter(pc.is_in(self.profiles.column("lead_id"), wanted)),
        )


def from_messages(
    model: ScoringModel, messages: Iterable[ActivityEvent], as_of: float
) -> BatchInputs:
    """Events and profiles (as of `as_of`) for every lead the messages name."""
    taker = _InputPass(model)
    with _collector_paused():
        taker.take_messages(messages)
    return taker.inputs(as_of)


def from_jsonl(
    model: ScoringModel,
    path: Path,
    as_of: float,
    problems: Problems,
    *,
    received_at: float | None = None,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> BatchInputs:
    """`from_messages` for a JSON Lines file, decoded by `workers` processes (one per CPU
    by default; 1 decodes in this process, as does a file of one range)."""
    taker = _InputPass(model)
    with _collector_paused():
        _take_jsonl(taker, path, problems, received_at, workers, chunk_bytes, progress)
    return taker.inputs(as_of)


def from_parquet(
    model: ScoringModel,
    path: Path,
    as_of: float,
    problems: Problems,
    mapping: ColumnMapping,
    *,
    received_at: float | None = None,
    workers: int | None = None,
    rows_per_range: int = ROWS_PER_RANGE,
    progress: Callable[[int], None] | None = None,
) -> BatchInputs:
    """`from_messages` for a Parquet file, its rows decoded by `workers` processes (one per
    CPU by default; 1 decodes in this process, as does a file of one range). `progress`
    gets the rows read so far."""
    taker = _InputPass(model)
    with _collector_paused():
        _take_parquet(
            taker, path, problems, mapping, received_at, workers, rows_per_range, progress
        )
    return taker.inputs(as_of)


@dataclasses.dataclass(frozen=True)
class EventFile:
    """A file of messages, and how it is read: `kind` is `jsonl`, `csv` or `parquet`
    (by its suffix, less a `.gz`); `gzipped` by its first bytes."""

    path: Path
    kind: str
    gzipped: bool


def event_files(paths: Iterable[Path]) -> list[EventFile]:
    """Each path a file of messages, or a folder of them: a folder's files, in all its
    subfolders, in the order of their paths, leaving out those whose name starts with
    `.` or `_` (what Spark, Hive and Hadoop write beside the data: `_SUCCESS`, `.crc`).
    Messages count in this order, file after file, as if the files were one."""
    files: list[EventFile] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            )
            if not found:
                raise QualifyError(f"no files of messages in the folder {path}")
            files.extend(_event_file(p) for p in found)
        elif path.is_file():
            files.append(_event_file(path))
        else:
            raise QualifyError(f"no such file or folder: {path}")
    return files


def _event_file(path: Path) -> EventFile:
    try:
        with path.open("rb") as file:
            gzipped = file.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise QualifyError(f"cannot read {path}: {exc}") from None
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    kind = {".parquet": "parquet", ".csv": "csv"}.get(suffix, "jsonl")
    if kind == "parquet" and gzipped:
        raise QualifyError(f"{path}: a gzipped Parquet file; Parquet compresses itself")
    return EventFile(path, kind, gzipped)


def from_files(
    model: ScoringModel,
    files: Iterable[EventFile],
    as_of: float,
    problems: Callable[[EventFile], Problems],
    mapping: ColumnMapping,
    *,
    received_at: float | None = None,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    rows_per_range: int = ROWS_PER_RANGE,
    progress: Callable[[EventFile], Callable[[int], None] | None] | None = None,
) -> BatchInputs:
    """`from_messages` for files of messages taken one after the other (`event_files`):
    identity, profiles and the first copy of each messageId across all of them. JSON
    Lines and Parquet files are decoded by `workers` processes; gzipped and CSV files in
    this one. `problems(file)` holds each file's bad lines; `progress(file)` gives the
    callback told a file's bytes read (rows, for Parquet)."""
    taker = _InputPass(model)
    workers = workers or os.cpu_count() or 1
    with _collector_paused():
        for run in _runs(files, workers):
            if len(run) > 1:  # gzipped JSON Lines files, decoded by workers a file each
                _take_gzipped(taker, run, problems, received_at, workers, progress)
                continue
            (file,) = run
            told = progress(file) if progress is not None else None
            found = problems(file)
            if file.kind == "parquet":
                _take_parquet(
                    taker, file.path, found, mapping, received_at, workers, rows_per_range, told
                )
            elif file.kind == "jsonl" and not file.gzipped:
                _take_jsonl(taker, file.path, found, received_at, workers, chunk_bytes, told)
            else:
                _take_serially(taker, file, found, mapping, received_at, told)
    return taker.inputs(as_of)


def _runs(files: Iterable[EventFile], workers: int) -> Iterator[list[EventFile]]:
    """The files one by one, except that consecutive gzipped JSON Lines files come as one
    run, for workers to decode a file each (when there are workers, and two files)."""
    for gzipped, group in itertools.groupby(
        files, key=lambda f: workers > 1 and f.kind == "jsonl" and f.gzipped
    ):
        run = list(group)
        if gzipped and len(run) > 1:
            yield run
        else:
            yield from ([file] for file in run)


def _take_serially(
    taker: _InputPass,
    file: EventFile,
    problems: Problems,
    mapping: ColumnMapping,
    received_at: float | None,
    progress: Callable[[int], None] | None,
) -> None:
    """A gzipped JSON Lines file, or a CSV file (gzipped or not), read in this process;
    `progress` is told the bytes read of the file as it lies on disk."""
    import gzip
    import io

    with file.path.open("rb") as raw:
        data: BinaryIO = gzip.GzipFile(fileobj=raw) if file.gzipped else raw  # type: ignore[assignment]
        if file.kind == "csv":
            text = io.TextIOWrapper(data, encoding="utf-8-sig", newline="")
            messages = read_csv(text, mapping, problems, received_at=received_at)
        else:
            messages = read_jsonl(data, problems, received_at=received_at)
        taker.take_messages(_counted(messages, raw, progress))


def _take_jsonl(
    taker: _InputPass,
    path: Path,
    problems: Problems,
    received_at: float | None,
    workers: int | None,
    chunk_bytes: int,
    progress: Callable[[int], None] | None,
) -> None:
    workers = workers or os.cpu_count() or 1
    bounds = chunk_bounds(path, chunk_bytes) if workers > 1 else []
    if len(bounds) < 2:
        with path.open("rb") as lines:
            reading = read_jsonl(lines, problems, received_at=received_at)
            taker.take_messages(_counted(reading, lines, progress))
        return

    def message(line: ActivityEvent | bytes | None, offset: int) -> ActivityEvent:
        if line is None:  # the first of its ids in its range was a copy, dropped
            return line_at(path, offset, received_at)
        return decode_line(line, received_at=received_at)  # type: ignore[arg-type]

    ranges = parallel_ranges(
        [(path, start, end) for start, end in bounds],
        taker.named,
        taker.tables,
        lambda _, line, reason: problems.add(line, reason),
        workers=workers,
        received_at=received_at,
        progress=None if progress is None else lambda _, done: progress(done),
    )
    for decoded in ranges:
        taker.take_range(decoded, message)


def _take_gzipped(
    taker: _InputPass,
    files: list[EventFile],
    problems: Callable[[EventFile], Problems],
    received_at: float | None,
    workers: int,
    progress: Callable[[EventFile], Callable[[int], None] | None] | None,
) -> None:
    """Gzipped JSON Lines files, one after the other, each decoded whole by a worker."""
    by_path = {file.path: file for file in files}

    def message(path: Path, line: ActivityEvent | bytes | None, index: int) -> ActivityEvent:
        if line is None:  # the first of its ids in its file was a copy, dropped
            return gzipped_line_at(path, index, received_at)
        return decode_line(line, received_at=received_at)  # type: ignore[arg-type]

    def told(path: Path, _: int) -> None:
        tell = progress(by_path[path]) if progress is not None else None
        if tell is not None:
            tell(path.stat().st_size)

    ranges = parallel_ranges(
        [(file.path, 0, 0) for file in files],
        taker.named,
        taker.tables,
        lambda path, line, reason: problems(by_path[path]).add(line, reason),
        workers=workers,
        received_at=received_at,
        progress=told,
        decode=decode_gzipped,
    )
    for decoded in ranges:
        taker.take_range(decoded, functools.partial(message, decoded.path))


def _take_parquet(
    taker: _InputPass,
    path: Path,
    problems: Problems,
    mapping: ColumnMapping,
    received_at: float | None,
    workers: int | None,
    rows_per_range: int,
    progress: Callable[[int], None] | None,
) -> None:
    from qualify.batch import parquet

    source = open_parquet(path, mapping)
    workers = workers or os.cpu_count() or 1
    bounds = parquet.row_bounds(source, rows_per_range) if workers > 1 else []
    if len(bounds) < 2:
        messages = read_parquet(path, mapping, problems, received_at=received_at, progress=progress)
        taker.take_messages(messages)
        return

    def message(carried: ActivityEvent | bytes | None, index: int) -> ActivityEvent:
        if carried is None:  # the first of its ids in its range was a copy, dropped
            return parquet.row_at(path, mapping, index, received_at)
        return pickle.loads(carried)  # type: ignore[arg-type,no-any-return]  # a worker's own

    ranges = parallel_ranges(
        [(path, start, end) for start, end in bounds],
        taker.named,
        taker.tables,
        lambda _, line, reason: problems.add(line, reason),
        workers=workers,
        received_at=received_at,
        progress=None if progress is None else lambda _, done: progress(done),
        decode=parquet.decode_rows,
        extra=(mapping,),
    )
    try:
        for decoded in ranges:
            taker.take_range(decoded, message)
    finally:
        parquet.forget_groups()


def _counted(
    events: Iterator[ActivityEvent], file: BinaryIO, progress: Callable[[int], None] | None
) -> Iterator[ActivityEvent]:
    """The events, telling `progress` the file's position now and then."""
    if progress is None:
        yield from events
        return
    for number, event in enumerate(events):
        if number % 10_000 == 0:
            progress(file.tell())
        yield event
    progress(file.tell())


def _as_is(event: ActivityEvent | bytes | None, offset: int) -> ActivityEvent:
    assert isinstance(event, ActivityEvent)  # records of messages decoded here carry them
    return event


class _InputPass:
    """Messages taken in file order into a `LeadBook` without engagement rules (identity,
    traits, accounts); of the rows rules can match, it keeps the first of each messageId."""

    def __init__(self, model: ScoringModel) -> None:
        self.book = LeadBook(CompiledModel(dataclasses.replace(model, engagement=())), dedupe=True)
        self.named: set[str] = set().union(*(rule.events for rule in model.engagement))
        self.keep: list[bool] = []  # for each rule row, in order
        self.tables: list[pa.Table] = []  # the rule rows, in order
        # the ids of a dropped copy that was the first of its ids in a worker's range
        self.unsure: set[tuple[str | None, str | None]] = set()

    def take(
        self,
        records: Iterable[Record],
        message: Callable[[ActivityEvent | bytes | None, int], ActivityEvent],
    ) -> None:
        """Take the records in file order; `message` gives a record's message (from its
        line, or by reading its offset again) when the book must see it.

        A record from a worker without its message had a message with the same ids before
        it in its range, which left those ids on one lead — unless it was a copy of an
        earlier messageId, and dropped: then its ids are `unsure` and looked up."""
        book = self.book
        seen, settled = book.seen, book.graph.settled_ids
        assert seen is not None
        keep, unsure = self.keep.append, self.unsure
        for message_id, name, user, anonymous, event, offset, rule in records:
            if message_id in seen:
                if name and event is not None:
                    unsure.add((user, anonymous))
                if rule:
                    keep(False)
                continue
            if name and (
                (event is None and (not unsure or (user, anonymous) not in unsure))
                or settled(user, anonymous) is not None
            ):
                # Every id it carries already points to one lead: the message changes no
                # identity and no profile (only first/last seen and the first touch, which
                # scores do not read), so the book need not see it.
                seen.add(message_id)
            else:
                book.apply(event if type(event) is ActivityEvent else message(event, offset))
            if rule:
                keep(True)

    def take_range(
        self,
        decoded: Range,
        message: Callable[[ActivityEvent | bytes | None, int], ActivityEvent],
    ) -> None:
        """A worker's range, in one of two ways. When no messageId in it came before (in
        it, or earlier) and no ids are unsure, only its records that carry a message can
        change anything: every other one has ids settled on one lead, and each rule row is
        kept. Otherwise its records are taken one by one, as `take` does."""
        seen = self.book.seen
        assert seen is not None
        ids = decoded.message_ids
        if self.unsure or not seen.isdisjoint(ids) or len(set(ids)) != len(ids):
            self.take(decoded.records(), message)
            return
        book, settled = self.book, self.book.graph.settled_ids
        for name, user, anonymous, line, offset in decoded.carried:
            if not name or settled(user, anonymous) is None:
                book.apply(message(line, offset))
        seen.update(ids)
        self.keep.extend(itertools.repeat(True, decoded.rule_rows))

    def take_messages(self, messages: Iterable[ActivityEvent]) -> None:
        """Messages decoded in this process, in order."""
        rows = RuleRows()
        self.take(records_of(messages, self.named, rows), _as_is)
        self.tables.append(rows.table())

    def inputs(self, as_of: float) -> BatchInputs:
        """The two relations; each rule row kept, with the lead its ids resolve to in the
        end: its userId's lead if it has one, else its anonymousId's."""
        book = self.book
        tables = self.tables or [RuleRows().table()]
        rows = pa.concat_tables(tables).filter(pa.array(self.keep, pa.bool_()))
        leads = _leads_of(rows, book.graph.users, book.graph.anonymous)
        columns = [leads, *(rows.column(c) for c in ("message_id", "name", "ts", "properties"))]
        events = pa.table(columns, schema=EVENT_SCHEMA)
        profiles = pa.table(
            [
                list(book.leads),
                [orjson.dumps(book.profile(r, as_of)).decode() for r in book.leads.values()],
            ],
            schema=PROFILE_SCHEMA,
        )
        return BatchInputs(events, profiles)


def _leads_of(rows: pa.Table, users: dict[str, str], anonymous: dict[str, str]) -> pa.Array:
    """Looked up in Arrow, and only where needed: a userId is its own lead unless merged
    into another (few are), and only rows without a userId look up their anonymousId."""
    import pyarrow.compute as pc

    def mapped(column: pa.Array, ids: dict[str, str]) -> pa.Array:
        keys = pa.array(list(ids), pa.string())
        return pc.take(pa.array(list(ids.values()), pa.string()), pc.index_in(column, keys))

    user = rows.column("user_id").combine_chunks()
    merged = {user_id: lead for user_id, lead in users.items() if user_id != lead}
    leads = pc.coalesce(mapped(user, merged), user) if merged else user
    unnamed = pc.is_null(user)
    if pc.any(unnamed).as_py():
        anonymous_ids = pc.filter(rows.column("anonymous_id").combine_chunks(), unnamed)
        leads = pc.replace_with_mask(leads, unnamed, mapped(anonymous_ids, anonymous))
    return leads


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The input pass keeps a record for every lead (millions of small objects) and makes
    no reference cycles: the cyclic collector would only rescan the records again and again
    (measured: an eighth of the pass at 300,000 leads, even with `bulk`'s thresholds)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # What the pass made is long-lived: straight to the oldest generation (freeze, then
        # unfreeze), or the first collection after would scan all of it at once.
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def from_store(model: ScoringModel, conn: Connection, as_of: float) -> BatchInputs:
    """Events and profiles (as of `as_of`) from the store's tables: every event already
    carries its lead (merges repoint them), and each lead row its traits with their stamps."""
    return BatchInputs(store_events(model, conn), store_profiles(model, conn, as_of))


def store_events(
    model: ScoringModel, conn: Connection, lead_ids: Collection[str] | None = None
) -> pa.Table:
    """The stored events rules can match (of some leads only, when given), as rows."""
    from sqlalchemy import select

    from qualify.store import repository as repo
    from qualify.store.tables import events

    named = set().union(*(rule.events for rule in model.engagement))
    columns: list[list[Any]] = [[], [], [], [], []]
    leads_of, message_ids, names, times, properties = columns
    # The stored `name` is the event as sent (any case): rules match the casefolded name.
    query = select(events.c.lead_id, repo.payload_text(conn), events.c.ts).where(
        events.c.type.in_(("track", "page", "screen"))
    )
    parts = [None] if lead_ids is None else list(repo.chunks(list(lead_ids)))
    for part in parts:
        chosen = query if part is None else query.where(events.c.lead_id.in_(part))
        for lead_id, payload, ts in conn.execution_options(yield_per=10_000).execute(chosen):
            event = repo.stored_event(payload, ts)  # as the live engine reads it back
            if event.name not in named:
                continue
            leads_of.append(lead_id)
            message_ids.append(event.message_id)
            names.append(event.name)
            times.append(event.timestamp)
            properties.append(orjson.dumps(event.properties).decode())
    return pa.table(columns, schema=EVENT_SCHEMA)


def store_profiles(model: ScoringModel, conn: Connection, as_of: float) -> pa.Table:
    """Every stored lead's profile as of `as_of`, from its traits and their stamps. Only
    the columns a profile is made of are read, as JSON text decoded here: whole lead rows,
    with their rule state, took three times as long (30,303 leads: 3.2 s)."""
    from sqlalchemy import select

    from qualify.store import repository as repo
    from qualify.store.tables import accounts, leads

    book = LeadBook(CompiledModel(dataclasses.replace(model, engagement=())))
    for row in conn.execute(select(accounts)):
        m = row._mapping
        book.accounts[m["id"]] = Account(m["id"], Traits.from_json(m["traits"], m["trait_stamps"]))
    query = select(
        leads.c.id,
        repo.json_text(conn, leads.c.traits),
        repo.json_text(conn, leads.c.trait_stamps),
        leads.c.account_id,
        repo.json_text(conn, leads.c.account_stamp),
    )
    no_state = LeadState(0)  # a profile is made of traits and the account link only
    loads, profile_ids, profiles = orjson.loads, [], []
    rows = conn.execution_options(yield_per=10_000).execute(query)
    for lead_id, traits, stamps, account_id, account_stamp in rows:
        record = LeadRecord(
            lead_id,
            no_state,
            Traits.from_json(loads(traits), loads(stamps)),
            account_id,
            None if account_stamp is None else repo.stamp_of(loads(account_stamp)),
        )
        profile_ids.append(lead_id)
        profiles.append(orjson.dumps(book.profile(record, as_of)).decode())
    return pa.table([profile_ids, profiles], schema=PROFILE_SCHEMA)


def stored_source(store: Engine) -> str | None:
    """What `stored_rows` opens to read a store's events with ADBC: a SQLite file as a
    read-only URI, or the PostgreSQL server's URL (libpq's form). None for a store in
    memory, or a SQLite path with `?`, `#` or `%` (ADBC opens a URI, and did not open such
    a path even escaped): those stores are read through Python instead."""
    url = store.url
    if store.dialect.name == "postgresql":
        return url.set(drivername="postgresql").render_as_string(hide_password=False)
    database = url.database
    if store.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return None if any(c in database for c in "?#%") else f"file:{database}?mode=ro"


@contextlib.contextmanager
def stored_rows(store: Engine) -> Iterator[pa.RecordBatchReader]:
    """A store's events rules can match, straight into Arrow batches: ADBC's drivers read
    them in C (SQLite's file, or PostgreSQL's binary COPY), with no Python object per event
    — reading them through Python took longer than scoring them. From SQLite, the rows as
    the store holds them (`STORED_SCHEMA`: the message as its JSON text, for DuckDB to
    parse); from PostgreSQL, the plan's events relation the server computes from its
    `jsonb` (`STORED_EVENTS_SCHEMA`, `pg_stored_events`): a third of the bytes, parsed
    where they are already parsed."""
    source = stored_source(store)
    if source is None:  # pragma: no cover - a bug: run_store asks stored_source first
        raise ValueError(f"ADBC cannot open the store {store.url!r}")
    if store.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc

        sql, schema = _pg_events_query(), STORED_EVENTS_SCHEMA
    else:
        import adbc_driver_sqlite.dbapi as adbc  # type: ignore[no-redef]

        sql, schema = _sqlite_rows_query(store), STORED_SCHEMA
    try:
        conn = adbc.connect(source)
    except adbc.Error as exc:  # psycopg opened this URL; libpq under ADBC seldom refuses it
        where = store.url.set(drivername=store.dialect.name).render_as_string()  # no password
        raise StoreError(f"cannot read the events of the store {where}: {exc}") from None
    with conn, conn.cursor() as cursor:
        cursor.execute(sql)
        rows = cursor.fetch_record_batch()
        # SQLite's driver types columns by the first rows it reads: with none, as integers
        yield rows if rows.schema.equals(schema) else rows.cast(schema)


def _sqlite_rows_query(store: Engine) -> str:
    from sqlalchemy import Float, cast, select

    from qualify.store import repository as repo
    from qualify.store.tables import events

    query = select(
        events.c.lead_id,
        events.c.message_id,
        events.c.type,
        events.c.name,
        cast(events.c.ts, Float).label("ts"),
        repo.payload_text(store).label("payload"),
    ).where(events.c.type.in_(("track", "page", "screen")))
    return str(query.compile(dialect=store.dialect, compile_kwargs={"literal_binds": True}))


def _pg_events_query() -> str:
    """`pg_stored_events` over the store's `events` table, as PostgreSQL SQL (Ibis)."""
    import ibis
    import ibis.expr.datatypes as dt

    from qualify.batch.dialects import pg_stored_events

    text, number = dt.String(), dt.Float64()
    columns = {"lead_id": text, "message_id": text, "type": text, "name": text, "ts": number}
    table = ibis.table({**columns, "payload": dt.JSON(binary=True)}, name="events")
    relation = pg_stored_events(table)
    relation = relation.mutate(properties=relation.properties.cast("string"))
    return str(ibis.to_sql(relation, dialect="postgres"))
