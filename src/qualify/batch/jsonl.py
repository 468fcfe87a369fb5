"""Messages taken for the batch input pass as `Record`s, and a JSON Lines file read into
them by several processes at once.

Decoding is most of the input pass's time, and each line decodes alone; what must happen
in file order (the first copy of a messageId wins, the first user an anonymous id meets
claims it) is cheap once the line is decoded. So worker processes decode byte ranges of the
file, and the caller's process takes their records in file order — the same code that takes
the records of messages decoded in-process (`records_of`). The rows rules read (`RuleRows`)
are built where the messages are decoded, as Arrow columns; the taker only says which of
them to keep (not the copies of a messageId seen before).

A record carries its message only where the taker may need it: a message without a rule
name (identify, group, alias), and the first message a worker sees with its combination of
ids. A later one with the same ids finds them settled on one lead, and then changes no
identity or profile — unless that first one was a copy, dropped: then the taker reads its
line again by its offset. So a range without copies of a messageId needs only its records
that carry a message taken one by one (`Range.carried`); the rest stay packed.
"""

from __future__ import annotations

import functools
import gc
import gzip
import itertools
import multiprocessing
import multiprocessing.context
import pickle
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pyarrow as pa

from qualify.core.activity import ActivityEvent, decode_line
from qualify.errors import MessageError, QualifyError

__all__ = [
    "RULE_ROWS",
    "Range",
    "RangeRecords",
    "Record",
    "RuleRows",
    "chunk_bounds",
    "decode_gzipped",
    "gzipped_line_at",
    "line_at",
    "parallel_ranges",
    "records_of",
]

# (messageId, rule name, userId, anonymousId, the message — or its line, from a worker —
# when the taker may need it, the line's offset in the file, whether it is a rule row)
Record = tuple[str, str, str | None, str | None, ActivityEvent | bytes | None, int, bool]

RULE_ROWS = pa.schema(
    [
        ("message_id", pa.string()),
        ("name", pa.string()),
        ("ts", pa.float64()),
        ("properties", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
    ]
)

_PACK = msgspec.msgpack.Encoder().encode
_PICKLE = functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)
_UNPACK = msgspec.msgpack.Decoder().decode
CHUNK_BYTES = 16 * 1024 * 1024  # a worker's task: big enough that handing it over is cheap


class RuleRows:
    """The messages rules can match, column by column, in the order they came."""

    def __init__(self) -> None:
        self.columns: list[list[Any]] = [[], [], [], [], [], []]

    def add(self, event: ActivityEvent) -> None:
        message_ids, names, times, properties, users, anonymous = self.columns
        message_ids.append(event.message_id)
        names.append(event.name)
        times.append(event.timestamp)
        properties.append(orjson.dumps(event.properties).decode())
        users.append(event.user_id)
        anonymous.append(event.anonymous_id)

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=RULE_ROWS)


def records_of(
    events: Iterable[ActivityEvent], named: Collection[str], rows: RuleRows
) -> Iterator[Record]:
    """Records of messages decoded in this process (each carries its message); the rule
    rows go to `rows` as the records are taken."""
    for event in events:
        name = event.name
        rule = name in named
        if rule:
            rows.add(event)
        yield event.message_id, name, event.user_id, event.anonymous_id, event, -1, rule


def chunk_bounds(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[int, int]]:
    """Byte ranges of about `chunk_bytes` that start and end at line boundaries."""
    size = path.stat().st_size
    bounds: list[tuple[int, int]] = []
    start = 0
    with path.open("rb") as file:
        while start < size:
            file.seek(min(start + chunk_bytes, size))
            if file.tell() < size:
                file.readline()  # to the end of the line the cut falls in
            end = max(file.tell(), start + 1)
            bounds.append((start, end))
            start = end
    return bounds


# The ids of the messages this worker has decoded (emptied when it starts, and when it holds
# `_COMBOS_KEPT`): its ranges come in file order, so a message whose ids are here had one
# with the same ids before it in the file.
_COMBOS: set[tuple[str | None, str | None]] = set()
_COMBOS_KEPT = 2_000_000


def decode_chunk(
    path: str, start: int, end: int, received_at: float | None, named: frozenset[str]
) -> tuple[bytes, bytes, pa.Table]:
    """A byte range decoded: `Range.head` and `Range.records` packed as MessagePack (flat
    records pack and unpack several times faster than pickled ones; a message goes as its
    line, decoded again only if the taker needs it), and the range's rule rows. Runs in a
    worker process; blank and bad lines are skipped as `read_jsonl` skips them. A record's
    offset is its line's position in the file."""
    with open(path, "rb") as file:
        file.seek(start)
        data = file.read(end - start)
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the range ends with a newline: no line after it
        lines.pop()
    offsets = itertools.accumulate((len(line) + 1 for line in lines), initial=start)
    return _decode_lines(lines, offsets, received_at, named)


def decode_gzipped(
    path: str, start: int, end: int, received_at: float | None, named: frozenset[str]
) -> tuple[bytes, bytes, pa.Table]:
    """A whole gzipped JSON Lines file decoded, as `decode_chunk` decodes a range (`start`
    and `end` are not used: a gzipped file cannot be read from the middle). A record's
    offset is its line's index."""
    with gzip.open(path, "rb") as file:
        lines = file.read().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return _decode_lines(lines, itertools.count(), received_at, named)


def _decode_lines(
    lines: list[bytes],
    offsets: Iterable[int],
    received_at: float | None,
    named: frozenset[str],
) -> tuple[bytes, bytes, pa.Table]:
    problems: list[tuple[int, str]] = []
    taken = RangeRecords(named)
    add = taken.add
    # `offsets` may run on past the last line (`accumulate`'s, `count`)
    for number, (line, at) in enumerate(zip(lines, offsets, strict=False), start=1):
        if not line or line.isspace():
            continue
        try:
            event = decode_line(line, received_at=received_at)
        except MessageError as exc:
            problems.append((number, exc.reason))
            continue
        add(event, at, line)
    return taken.packed(len(lines), problems)


class RangeRecords:
    """The records of one worker's range as its messages are decoded, in order: what
    `Range` is made of. `add` takes a message with what the taker would decode it from
    again: its line; or None, for a message from no line (a table's row), which then goes
    pickled where it must be carried."""

    def __init__(self, named: frozenset[str]) -> None:
        self.named = named
        self.records: list[tuple[Any, ...]] = []
        self.message_ids: list[str] = []
        self.carried: list[tuple[Any, ...]] = []
        self.rows = RuleRows()
        if len(_COMBOS) > _COMBOS_KEPT:
            _COMBOS.clear()

    def add(self, event: ActivityEvent, at: int, line: bytes | None) -> None:
        name, user, anonymous = event.name, event.user_id, event.anonymous_id
        carry = True
        if name:
            combo = (user, anonymous)
            if combo in _COMBOS:
                carry = False
            else:
                _COMBOS.add(combo)
        rule = name in self.named
        if rule:
            self.rows.add(event)
        message = None if not carry else line if line is not None else _PICKLE(event)
        self.records.append((event.message_id, name, user, anonymous, message, at, rule))
        self.message_ids.append(event.message_id)
        if message is not None:
            self.carried.append((name, user, anonymous, message, at))

    def packed(self, count: int, problems: list[tuple[int, str]]) -> tuple[bytes, bytes, pa.Table]:
        """What the worker sends: the head (`count` lines or rows, the problems, the
        messageIds, the carried records), the records, the rule rows."""
        head = (count, problems, self.message_ids, self.carried)
        return _PACK(head), _PACK(self.records), self.rows.table()


def _start_worker() -> None:
    _COMBOS.clear()  # a forked worker must not believe what its parent's calls decoded
    gc.disable()  # it keeps only the lists of its range and `_COMBOS`, and makes no cycles


def line_at(path: Path, offset: int, received_at: float | None) -> ActivityEvent:
    """The message on the line at `offset` (a worker decoded it once already)."""
    with path.open("rb") as file:
        file.seek(offset)
        return decode_line(file.readline(), received_at=received_at)


def gzipped_line_at(path: Path, index: int, received_at: float | None) -> ActivityEvent:
    """The message on line `index` (from 0) of a gzipped file, read from its start."""
    with gzip.open(path, "rb") as file:
        line = next(itertools.islice(file, index, None))
    return decode_line(line, received_at=received_at)


@dataclass(frozen=True, slots=True)
class Range:
    """A worker's range of a file, decoded. `message_ids`: every message's, in order; `carried`:
    (rule name, userId, anonymousId, line, offset) of the records that carry their message;
    `records`: every `Record`, still packed (the taker unpacks them only when the range holds
    a copy of a messageId); `rule_rows`: how many rule rows it has."""

    path: Path
    message_ids: list[str]
    carried: list[tuple[str, str | None, str | None, bytes, int]]
    packed: bytes
    rule_rows: int

    def records(self) -> list[Record]:
        return _UNPACK(self.packed)  # type: ignore[no-any-return]


def parallel_ranges(
    tasks: list[tuple[Path, int, int]],
    named: Collection[str],
    tables: list[pa.Table],
    report: Callable[[Path, int, str], None],
    *,
    workers: int,
    received_at: float | None = None,
    progress: Callable[[Path, int], None] | None = None,
    decode: Callable[..., tuple[bytes, bytes, pa.Table]] = decode_chunk,
    extra: tuple[Any, ...] = (),
) -> Iterator[Range]:
    """Ranges of files, `(path, start, end)` in the order the files are to be read (a
    file's from `chunk_bounds`), decoded by `workers` processes and given in that order;
    each range's rule rows are appended to `tables` before it comes. Bad lines go to
    `report(path, line number, reason)`, numbered as in their file; `progress(path, end)`
    is told where each range ended. At most two ranges a worker are decoded ahead of the
    taker, so memory stays bounded however large the files.

    `decode` is what a worker runs on a range, `decode(path, start, end, received_at,
    named, *extra)`: `decode_chunk` for byte ranges of JSON Lines, `decode_gzipped` for
    whole gzipped files (`decode_rows` for row ranges of a Parquet file, whose ranges
    count rows)."""
    queued = iter(tasks)
    frozen = frozenset(named)
    pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_start_worker)
    pending: deque[tuple[Path, int, Future[tuple[bytes, bytes, pa.Table]]]] = deque()

    def submit() -> None:
        task = next(queued, None)
        if task is not None:
            path, start, end = task
            arguments = (str(path), start, end, received_at, frozen, *extra)
            pending.append((path, end, pool.submit(decode, *arguments)))

    try:
        for _ in range(2 * workers):
            submit()
        lines_before, before_in = 0, None
        while pending:
            path, end, future = pending.popleft()
            try:
                head, packed, table = future.result()
            except BrokenProcessPool:
                raise QualifyError(
                    f"a process decoding {path} died (out of memory?): try fewer --jobs"
                ) from None
            submit()
            if path != before_in:  # the first range of the next file
                lines_before, before_in = 0, path
            count, problems, message_ids, carried = _UNPACK(head)
            for number, reason in problems:
                report(path, lines_before + number, reason)
            lines_before += count
            tables.append(table)
            yield Range(path, message_ids, carried, packed, table.num_rows)
            if progress is not None:
                progress(path, end)
    finally:
        pool.shutdown(cancel_futures=True)


def _context() -> multiprocessing.context.BaseContext:
    """fork where there is one: a spawned worker would first import the caller's main
    module (`python -m qualify` would run the command again) and the libraries it imports.
    A forked worker runs only `decode_chunk`, which takes no lock another thread of the
    caller (a progress bar's) may have held when it forked."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
