"""A Parquet file of messages read into `Record`s by several processes at once, as a JSON
Lines file is (`qualify.batch.jsonl`): each worker decodes a range of rows with the code
that reads the file in one process (`parquet_messages`), and the taker takes the ranges in
file order.

A row has no line to read again, so a record that carries its message carries it pickled
(exact for every value a row can hold); and a record whose message the taker needs after
all (the first of its ids in its range was a copy, dropped) is decoded again from its row
(`row_at`), as a JSON Lines line is read again by its offset.

Row groups are what a Parquet file can be read by. A worker keeps the last group it read,
so a large group cut into several ranges is read once per worker, not once per range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from qualify.batch.jsonl import RangeRecords
from qualify.core.activity import ActivityEvent
from qualify.errors import MessageError
from qualify.service.files import ColumnMapping, open_parquet, parquet_messages

__all__ = ["ROWS_PER_RANGE", "decode_rows", "forget_groups", "row_at", "row_bounds"]

# About as many messages as a JSON Lines range holds (16 MB of lines of ~300 bytes).
ROWS_PER_RANGE = 50_000

# The last row group this worker read: (path, group) → its rows.
_GROUP: dict[tuple[str, int], pa.Table] = {}


def row_bounds(source: Any, rows_per_range: int = ROWS_PER_RANGE) -> list[tuple[int, int]]:
    """Ranges of rows, [start, end), of about `rows_per_range`, that do not cross a row
    group unless groups are small: a range is then several whole groups."""
    bounds: list[tuple[int, int]] = []
    start = 0
    metadata = source.metadata
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        end = start + rows
        if bounds and bounds[-1][1] == start and end - bounds[-1][0] <= rows_per_range:
            bounds[-1] = (bounds[-1][0], end)  # a small group joins the range before
        else:
            bounds.extend(
                (cut, min(cut + rows_per_range, end)) for cut in range(start, end, rows_per_range)
            )
        start = end
    return bounds


def decode_rows(
    path: str,
    start: int,
    end: int,
    received_at: float | None,
    named: frozenset[str],
    mapping: ColumnMapping,
) -> tuple[bytes, bytes, pa.Table]:
    """Rows [start, end) decoded, as `decode_chunk` decodes a byte range (runs in a
    worker). Each record's offset is its row's index in the file."""
    problems: list[tuple[int, str]] = []
    taken = RangeRecords(named)
    add = taken.add
    index = start
    for batch in _rows(path, start, end).to_batches(max_chunksize=10_000):
        for decoded in parquet_messages(batch, mapping, received_at):
            if isinstance(decoded, MessageError):
                problems.append((index - start + 1, decoded.reason))
            else:
                add(decoded, index, None)
            index += 1
    return taken.packed(end - start, problems)


def row_at(
    path: Path, mapping: ColumnMapping, index: int, received_at: float | None
) -> ActivityEvent:
    """The message of the row at `index` (a worker decoded it once already)."""
    (batch,) = _rows(str(path), index, index + 1).combine_chunks().to_batches()
    (decoded,) = parquet_messages(batch, mapping, received_at)
    assert type(decoded) is ActivityEvent  # a worker decoded it: it is no bad row
    return decoded


def forget_groups() -> None:
    """Drop the row group this process keeps (the taker's, after the last `row_at`)."""
    _GROUP.clear()


def _rows(path: str, start: int, end: int) -> pa.Table:
    """Rows [start, end) of the file, from the row groups they are in."""
    source = open_parquet(path, ColumnMapping({}))
    metadata = source.metadata
    pieces = []
    first = 0
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if first < end and start < first + rows:
            table = _group(source, path, group)
            offset = max(start - first, 0)
            pieces.append(table.slice(offset, min(end, first + rows) - first - offset))
        first += rows
    if not pieces:
        return source.schema_arrow.empty_table()
    return pa.concat_tables(pieces)


def _group(source: Any, path: str, group: int) -> pa.Table:
    key = (path, group)
    table = _GROUP.get(key)
    if table is None:
        _GROUP.clear()
        table = _GROUP[key] = source.read_row_group(group)
    return table
