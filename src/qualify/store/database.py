"""Opening a store: any SQLAlchemy URL, SQLite by default, migrated to the latest schema.

SQLite runs in WAL mode with `synchronous=FULL`: readers never block the single writer, and
a committed transaction survives a crash of the process and of the machine (a power cut), so
what the service acknowledged is stored. `?synchronous=normal` on the URL trades the second
for speed. PostgreSQL uses the same code through psycopg 3; `postgresql://` URLs are mapped
to that driver.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from qualify.errors import StoreError
from qualify.store.tables import store_state

__all__ = [
    "DEFAULT_URL",
    "Checkpointer",
    "WalSync",
    "database_url",
    "ingest_engine",
    "open_engine",
    "writing",
]

DEFAULT_URL = "sqlite:///qualify.db"
ENV_VAR = "QUALIFY_DATABASE_URL"


def database_url(url: str | None = None) -> str:
    """The URL to use: the one given, else $QUALIFY_DATABASE_URL, else ./qualify.db."""
    chosen = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    if chosen.startswith("postgres://"):
        chosen = "postgresql://" + chosen.removeprefix("postgres://")
    if chosen.startswith("postgresql://"):
        chosen = "postgresql+psycopg://" + chosen.removeprefix("postgresql://")
    if "://" not in chosen:  # a bare path means a SQLite file
        chosen = f"sqlite:///{chosen}"
    return chosen


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


WAL_LIMIT_FRAMES = 16_384  # 64 MB of 4 KB pages: the WAL is started over past it
# WAL: readers do not block the writer. A 64 MiB page cache (the default is 2 MiB) keeps the
# events' messageId index in memory while a batch inserts: measured, a third less system time.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-65536",
    # the WAL file is cut back to this size whenever it starts over (`Checkpointer`)
    f"PRAGMA journal_size_limit={WAL_LIMIT_FRAMES * 4096}",
)
# FULL: each commit syncs the WAL, so a power cut loses nothing committed (acknowledged means
# durable). NORMAL skips that sync: a commit then survives a crash of the process only, and
# a power cut may lose the commits since the last checkpoint.
SYNCHRONOUS = ("full", "normal")


def sqlite_pragmas(synchronous: str = "full") -> tuple[str, ...]:
    """A store's SQLite settings (the benchmarks' raw baselines use them too)."""
    return (*SQLITE_PRAGMAS, f"PRAGMA synchronous={synchronous.upper()}")


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    pragmas = sqlite_pragmas(synchronous)

    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # The driver would begin transactions itself, and only before the first write:
        # reads before it would see no snapshot at all. We begin them (`_sqlite_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    return set_pragmas


def _sqlite_begin(conn: Connection) -> None:
    """A writer takes SQLite's write lock when it begins (waiting up to the busy timeout),
    so what it reads stays true until it commits; readers begin deferred."""
    writer = conn.get_execution_options().get(WRITER_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


# Every lead-changing transaction runs it: as driver SQL it skips the expression layer
# (a third of a single message's transaction went to SQLAlchemy's statement handling).
_BUMP = "UPDATE store_state SET generation = generation + 1 RETURNING generation"
WRITER_OPTION = "qualify_writer"
GENERATION = "qualify_generation"  # in a writer's `conn.info`: the store's write generation
# Any fixed 64-bit number: the PostgreSQL advisory lock that writers of leads hold.
_PG_WRITER_LOCK = 0x5175616C696679


@contextlib.contextmanager
def writing(engine: Engine, *, leads: bool = True) -> Iterator[Connection]:
    """A transaction that changes leads: one at a time, across processes too. Each bumps
    the store's write generation (`conn.info[GENERATION]`). `leads=False` is for writes
    that touch no lead, the active model or the webhook subscriptions (webhook deliveries):
    they neither wait for lead writers on PostgreSQL nor make ingestion forget what it keeps
    in memory.

    Ingestion, sales actions and rescoring read a lead, change it in memory and write it back;
    two of them at once on the same lead would lose one's update. Writers therefore hold the
    store's write lock for their whole transaction — SQLite's own (`BEGIN IMMEDIATE`), or a
    transaction-level advisory lock on PostgreSQL — while readers go on unhindered.
    """
    with engine.connect() as conn:
        conn.execution_options(**{WRITER_OPTION: True})
        with conn.begin():
            if not leads:
                yield conn
                return
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_WRITER_LOCK,))
            generation = conn.exec_driver_sql(_BUMP).scalar()
            if generation is None:  # the row was deleted (a wiped store): start again
                generation = 1
                conn.execute(insert(store_state).values(id=1, generation=generation))
            conn.info[GENERATION] = generation
            yield conn


class Checkpointer:
    """SQLite: WAL checkpoints in a background thread instead of inside a commit, and a WAL
    that stays bounded under a steady load.

    By default the commit that pushes the WAL past 1,000 pages copies it into the database
    and syncs — tens of milliseconds for whichever request is unlucky. A server turns that
    off and checkpoints every `interval` seconds from here (PASSIVE: never blocking readers or
    the writer), so requests keep their latency.

    A PASSIVE checkpoint copies the WAL into the database, but the WAL only starts over from
    its beginning when a checkpoint has copied all of it before the next commit, which never
    happens while a writer commits many times a second: under a steady load the file grew
    without end (6.9 GB after 400,000 messages, into a 258 MB store), and every read got
    slower for it. So once a round finds more than `limit` frames in the WAL, the WAL is
    started over (a RESTART checkpoint, which needs a moment with no writer): by the
    service's writer between two transactions (`restart_if_due`), where it waits for nobody,
    or by this thread when no writer came by since the last round. With `journal_size_limit`
    (`SQLITE_PRAGMAS`), starting over also gives the file's space back.
    """

    def __init__(
        self,
        engine: Engine,
        interval: float = 1.0,
        *,
        also: tuple[Engine, ...] = (),
        limit: int = WAL_LIMIT_FRAMES,
    ) -> None:
        """`also`: other engines on the same file (a service's writer), whose commits must
        not checkpoint either."""
        self.engine, self.interval, self.limit = engine, interval, limit
        self.stopped = threading.Event()
        self.due = threading.Event()  # the WAL is over its limit: start it over
        for each in {engine, *also}:
            event.listen(each, "connect", _no_autocheckpoint)
            each.dispose()  # connections opened from now on have the setting
        self.thread = threading.Thread(target=self._run, name="qualify-checkpoint", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        """One round: copy what the WAL holds into the database; start the WAL over once it
        is over its limit."""
        if _checkpoint(self.engine, "PASSIVE") <= self.limit:
            self.due.clear()
        elif self.due.is_set():  # asked a round ago, and no writer came by: do it here
            # (and give the file's space back now: no writer may come for a while)
            self.due.clear()
            _checkpoint(self.engine, "TRUNCATE")
        else:
            self.due.set()

    def restart_if_due(self, engine: Engine) -> None:
        """Run by a writer between its transactions: start the WAL over if a round asked.
        The writer's next commit then writes from the file's beginning again."""
        if self.due.is_set():
            self.due.clear()
            _checkpoint(engine, "RESTART")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
        _checkpoint(self.engine, "PASSIVE")


def _checkpoint(engine: Engine, mode: str) -> int:
    """Runs a checkpoint; returns the frames the WAL held as it ran (0 after TRUNCATE; -1: no
    WAL). After RESTART it still counts the old frames until the next commit starts over."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        row = cursor.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        cursor.close()
    finally:
        connection.close()
    return row[1] if row else 0


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def open_engine(url: str | None = None, *, migrate: bool = True, create: bool = True) -> Engine:
    """An engine on the store, with its schema upgraded to the latest migration.

    `create=False` refuses to start a new SQLite file: commands that only read or change
    existing leads should say the store is missing rather than show an empty one.
    """
    chosen = database_url(url)
    try:
        parsed = make_url(chosen)
    except ArgumentError:
        raise StoreError(
            f"`{chosen}` is not a database URL: use e.g. sqlite:///qualify.db "
            "or postgresql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"Qualify stores leads in SQLite or PostgreSQL, not `{backend}`")
    sqlite = backend == "sqlite"
    synchronous = "full"
    if sqlite:
        synchronous, parsed = _synchronous(parsed)
    elif "synchronous" in parsed.query:
        raise StoreError(
            "`synchronous=` in the store URL is a SQLite setting; on PostgreSQL a commit is "
            "durable by the server's own `synchronous_commit` (on by default)"
        )
    if sqlite and parsed.database and parsed.database != ":memory:":
        if not create and not Path(parsed.database).expanduser().exists():
            raise StoreError(
                f"no store at {parsed.database}: run `qualify demo`, or `qualify model "
                "activate MODEL.yaml` to start one (or point --db at an existing store)"
            )
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise StoreError(
                f"cannot create the database {parsed.database}: folder {folder} does not exist"
            )
    try:
        engine = create_engine(
            parsed,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            pool_pre_ping=not sqlite,
        )
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot open `{chosen}`: {exc}") from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas(synchronous))
        event.listen(engine, "begin", _sqlite_begin)
    if not create and not _holds_a_store(engine):
        engine.dispose()
        raise StoreError(
            f"{parsed.render_as_string()} holds no Qualify store (no tables of ours), and this "
            "command does not start one: check --db, or start a store with `qualify model "
            "activate MODEL.yaml --db …` (or `qualify demo`)"
        )
    if migrate:
        upgrade(engine)
    return engine


def _holds_a_store(engine: Engine) -> bool:
    """Whether the database was ever migrated by Qualify: another application's database (a
    mistyped --db) must not get our tables from a command that only reads."""
    try:
        return inspect(engine).has_table("alembic_version")
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the database {engine.url.render_as_string()}: {exc.orig}"
        ) from None


def ingest_engine(engine: Engine, url: str | None) -> tuple[Engine, Callable[[], None] | None]:
    """The engine a service's writer commits through, and the sync it must run after each
    commit before acknowledging it (None: the commit itself is durable enough).

    On a SQLite store that syncs every commit (the default), the writer gets connections
    that commit without syncing, and a `WalSync` to run in another thread: the disk's
    sync then overlaps the next group's work instead of holding up the writer. The
    messages a commit acknowledges are as durable either way: their WAL frames are on disk
    before the answer goes out. Other writers (sales actions, rescoring) keep `engine`."""
    chosen = make_url(database_url(url))
    if chosen.get_backend_name() != "sqlite" or chosen.database in (None, "", ":memory:"):
        return engine, None
    synchronous, plain = _synchronous(chosen)
    if synchronous != "full":
        return engine, None
    deferred = plain.update_query_dict({"synchronous": "normal"})
    writer = open_engine(deferred.render_as_string(hide_password=False), migrate=False)
    return writer, WalSync(Path(plain.database or "").expanduser().absolute())


_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class WalSync:
    """Syncs a SQLite store's write-ahead log to disk: what a commit with
    `synchronous=FULL` does itself, run apart from it. The sync makes every frame written
    to the file durable, whichever connection wrote it. `fdatasync` where there is one, as
    SQLite uses: it flushes the data and what reading it back needs (the file's size), not
    the times; measured 3 % more writer throughput than `fsync` (docs/benchmarks.md)."""

    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}-wal")

    def __call__(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: the database file was synced
            return
        try:
            _datasync(fd)
        finally:
            os.close(fd)


def _synchronous(url: URL) -> tuple[str, URL]:
    """The URL's `synchronous` setting (`full` unless it says `normal`), and the URL without
    it: it is ours, not the driver's."""
    given = url.query.get("synchronous", "full")
    value = (given if isinstance(given, str) else given[-1]).lower()
    if value not in SYNCHRONOUS:
        raise StoreError(
            f"`synchronous={given}` in the store URL: use `synchronous=full` (the default: "
            "nothing committed is lost, even in a power cut) or `synchronous=normal` (faster "
            "commits that survive a crash of the process only)"
        )
    return value, url.difference_update_query(["synchronous"])


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations up to the latest revision."""
    config = Config()
    config.set_main_option("script_location", "qualify.store:migrations")
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the database {engine.url.render_as_string()}: {exc.orig}"
        ) from None
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the database: {exc}") from None
