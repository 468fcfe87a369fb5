"""Decoding message files: Segment-spec JSON Lines, and CSV through a column mapping.

These take lines or rows (the caller opens the file) and yield `ActivityEvent`s; every bad
line is reported with its line number and the reason, and the good lines go on.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from qualify.core.activity import ActivityEvent, decode_line, decode_message
from qualify.errors import IngestError, MessageError

__all__ = [
    "ColumnMapping",
    "LineProblem",
    "open_parquet",
    "parquet_messages",
    "read_csv",
    "read_jsonl",
    "read_parquet",
]

MESSAGE_FIELDS = (
    "type",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "event",
    "name",
    "groupId",
    "previousId",
)
NESTED = ("traits", "properties", "context")


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    reason: str


@dataclass(slots=True)
class Problems:
    items: list[LineProblem] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        self.items.append(LineProblem(line, reason))


def read_jsonl(
    lines: Iterable[bytes | str],
    problems: Problems,
    *,
    received_at: float | None = None,
    keep_raw: bool = False,
) -> Iterator[ActivityEvent]:
    """Decode JSON Lines; blank lines are skipped, bad ones reported in `problems`.

    `keep_raw` keeps each line on its event (the store saves messages as they came).
    """
    for number, line in enumerate(lines, start=1):
        if not line or line.isspace():  # `strip` would copy every line
            continue
        try:
            yield decode_line(line, received_at=received_at, keep_raw=keep_raw)
        except MessageError as exc:
            problems.add(number, exc.reason)


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which CSV column feeds which message field (`userId`, `traits.industry`, ...).

    Columns named like a message field map to it by themselves; the rest go to `traits`
    (identify rows) or `properties` (track and page rows) under their header name.
    """

    columns: Mapping[str, str]
    default_type: str = "identify"

    @classmethod
    def parse(cls, specs: Iterable[str], default_type: str | None = None) -> ColumnMapping:
        columns: dict[str, str] = {}
        for spec in specs:
            column, sep, target = spec.partition("=")
            if not sep or not column.strip() or not target.strip():
                raise IngestError(
                    f"`--map {spec}` is not COLUMN=FIELD, e.g. "
                    "`--map Email=userId` or `--map Industry=traits.industry`"
                )
            target = target.strip()
            head = target.split(".", 1)[0]
            if target not in MESSAGE_FIELDS and not (head in NESTED and "." in target):
                raise IngestError(
                    f"`--map {spec}`: unknown field `{target}`; use one of "
                    f"{', '.join(MESSAGE_FIELDS)} or traits.X, properties.X"
                )
            columns[column.strip()] = target
        mapped = set(columns.values())
        kind = default_type or ("track" if "event" in mapped else "identify")
        return cls(columns, kind)

    def target(self, column: str) -> str:
        if column in self.columns:
            return self.columns[column]
        if column in MESSAGE_FIELDS:
            return column
        return ""

    def message(self, row: Mapping[str, str]) -> dict[str, Any]:
        message: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for column, value in row.items():
            if column is None or value is None or value == "":
                continue
            target = self.target(column)
            if not target and column in NESTED and isinstance(value, Mapping):
                message.setdefault(column, {}).update(value)  # a whole object (Parquet)
            elif not target:
                extra[column] = value
            elif "." in target:
                head, key = target.split(".", 1)
                message.setdefault(head, {})[key] = value
            else:
                message[target] = value
        message.setdefault("type", self.default_type)
        bucket = "traits" if message["type"] in ("identify", "group") else "properties"
        if extra:
            message[bucket] = {**extra, **message.get(bucket, {})}
        return message


def read_csv(
    lines: Iterable[str],
    mapping: ColumnMapping,
    problems: Problems,
    *,
    received_at: float | None = None,
) -> Iterator[ActivityEvent]:
    """Decode CSV rows (with a header) into messages; line numbers count the header as 1."""
    reader = csv.DictReader(lines)
    headers = reader.fieldnames or []
    missing = [c for c in mapping.columns if c not in headers]
    if missing:
        raise IngestError(
            f"--map names column {', '.join(f'`{c}`' for c in missing)} that the file does not "
            f"have; its columns are: {', '.join(headers) or '(none)'}"
        )
    for row in reader:
        number = reader.line_num
        try:
            yield decode_message(mapping.message(row), received_at=received_at)
        except MessageError as exc:
            problems.add(number, exc.reason)


def read_parquet(
    path: Any,
    mapping: ColumnMapping,
    problems: Problems,
    *,
    received_at: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ActivityEvent]:
    """Decode the rows of a Parquet file into messages; problems name the row (from 1).

    Columns map as in CSV. `properties`, `traits` and `context` may be structs or JSON text
    (as an export writes them); timestamps may be Parquet timestamps (naive ones are UTC).
    """
    source = open_parquet(path, mapping)
    number = 0
    for batch in source.iter_batches(batch_size=10_000):
        for decoded in parquet_messages(batch, mapping, received_at):
            number += 1
            if isinstance(decoded, MessageError):
                problems.add(number, decoded.reason)
            else:
                yield decoded
        if progress is not None:
            progress(number)


def open_parquet(path: Any, mapping: ColumnMapping) -> Any:
    """The file as a `pyarrow.parquet.ParquetFile`, once it is known to be one and to have
    every column `--map` names."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the `batch` extra is part of the test extras
        raise IngestError(
            f"reading {path} (Parquet) needs pyarrow: pip install 'qualify[batch]'"
        ) from None

    try:
        source = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's own errors: not a Parquet file, unreadable
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from None
    headers = source.schema_arrow.names
    missing = [c for c in mapping.columns if c not in headers]
    if missing:
        raise IngestError(
            f"--map names column {', '.join(f'`{c}`' for c in missing)} that the file does not "
            f"have; its columns are: {', '.join(headers) or '(none)'}"
        )
    return source


def parquet_messages(
    batch: Any, mapping: ColumnMapping, received_at: float | None
) -> Iterator[ActivityEvent | MessageError]:
    """Each row of an Arrow record batch as its message, or the `MessageError` that says
    what is wrong with it, in order.

    A row is taken as `ColumnMapping.message` takes a CSV row, once its values are made
    plain JSON (objects from JSON text, times as ISO); both in one pass over the row's
    values, with what each column becomes worked out once per batch (a row as a dict
    through the two, one after the other, cost twice as much)."""
    plan = [_column_plan(name, mapping.target(name)) for name in batch.schema.names]
    columns = [column.to_pylist() for column in batch.columns]
    default_type = mapping.default_type
    for values in zip(*columns, strict=True):
        try:
            message = _row_message(plan, values, default_type)
            yield decode_message(message, received_at=received_at)
        except MessageError as exc:
            yield exc


# What a column's value becomes: a field, a key of an object, a whole object, or a key
# of the properties (or traits) for a column mapped to nothing.
_FIELD, _KEY, _OBJECT, _EXTRA = range(4)


def _column_plan(column: str, target: str) -> tuple[str, bool, int, str, str]:
    """(column, whether its text is a JSON object, what it becomes, where)."""
    nested = column in NESTED
    if not target:
        return column, nested, _OBJECT if nested else _EXTRA, column, ""
    if "." in target:
        head, key = target.split(".", 1)
        return column, nested, _KEY, head, key
    return column, nested, _FIELD, target, ""


def _row_message(
    plan: list[tuple[str, bool, int, str, str]], values: tuple[Any, ...], default_type: str
) -> dict[str, Any]:
    """The message of a row given as its values in column order: as `ColumnMapping.message`
    makes it, with text in `properties`, `traits` and `context` read as a JSON object and
    Parquet timestamps as ISO text (naive ones are UTC)."""
    message: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for (column, nested, kind, where, key), value in zip(plan, values, strict=True):
        if value is None:
            continue
        if type(value) is str:
            if nested:
                value = _json_object(column, value)
            elif value == "":
                continue
        elif isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            value = moment.isoformat()
        if kind == _FIELD:
            message[where] = value
        elif kind == _KEY:
            message.setdefault(where, {})[key] = value
        elif kind == _OBJECT and isinstance(value, Mapping):
            message.setdefault(column, {}).update(value)  # a whole object (Parquet)
        else:
            extra[column] = value
    message.setdefault("type", default_type)
    bucket = "traits" if message["type"] in ("identify", "group") else "properties"
    if extra:
        message[bucket] = {**extra, **message.get(bucket, {})}
    return message


def _json_object(column: str, text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MessageError(f"`{column}` is not JSON text: {text[:60]!r}") from None
    if not isinstance(value, dict):
        raise MessageError(f"`{column}` must be a JSON object")
    return value
