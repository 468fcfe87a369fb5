"""A Parquet file read by worker processes gives exactly the input pass of the same file read
in-process: the same rule rows and profiles, the same bad rows with the same numbers — with
row groups and ranges small enough that ids, copies of a messageId and merges cross
between them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from input_pass import MODEL, RECEIVED, T0, assert_same, lines
from qualify.batch.inputs import BatchInputs, from_messages, from_parquet
from qualify.batch.parquet import row_bounds
from qualify.core.activity import ActivityEvent, decode_message
from qualify.errors import MessageError
from qualify.service.files import ColumnMapping, Problems, parquet_messages, read_parquet

FIELDS = ("type", "messageId", "userId", "anonymousId", "event", "groupId", "previousId")
OBJECTS = ("properties", "traits")
NO_MAP = ColumnMapping({})


def write(path: Path, messages: list[dict[str, Any]], group_rows: int, times: str) -> None:
    """The messages as a table an export would write: a column per field, objects as JSON
    text, times as numbers or as Parquet timestamps, `group_rows` rows per row group."""
    columns: dict[str, pa.Array] = {
        name: pa.array([m.get(name) for m in messages], pa.string()) for name in FIELDS
    }
    stamps = [m.get("timestamp") for m in messages]
    if times == "numbers":
        columns["timestamp"] = pa.array(stamps, pa.float64())
    else:
        moments = [None if t is None else datetime.fromtimestamp(t, UTC) for t in stamps]
        columns["timestamp"] = pa.array(moments, pa.timestamp("ms", "UTC"))
    for name in OBJECTS:
        texts = [None if name not in m else orjson.dumps(m[name]).decode() for m in messages]
        columns[name] = pa.array(texts, pa.string())
    pq.write_table(pa.table(columns), path, row_group_size=max(group_rows, 1))


def messages_of(content: list[bytes]) -> list[dict[str, Any]]:
    """The JSON Lines test's messages that are objects (a row cannot hold the others)."""
    out = []
    for line in content:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(message, dict):
            out.append(message)
    return out


def serial(path: Path) -> tuple[BatchInputs, list]:
    problems = Problems()
    messages = read_parquet(path, NO_MAP, problems, received_at=RECEIVED)
    return from_messages(MODEL, messages, T0), problems.items


def parallel(path: Path, rows_per_range: int) -> tuple[BatchInputs, list]:
    problems = Problems()
    inputs = from_parquet(
        MODEL,
        path,
        T0,
        problems,
        NO_MAP,
        received_at=RECEIVED,
        workers=2,
        rows_per_range=rows_per_range,
    )
    return inputs, problems.items


@pytest.mark.slow
def test_workers_read_a_file_exactly_as_one_process_does(tmp_path: Path) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        lines(),
        st.integers(1, 20),
        st.integers(1, 30),
        st.sampled_from(("numbers", "timestamps")),
    )
    def check(content: list[bytes], group_rows: int, rows_per_range: int, times: str) -> None:
        path = tmp_path / "messages.parquet"
        write(path, messages_of(content), group_rows, times)
        assert_same(serial(path), parallel(path, rows_per_range))

    check()


def test_a_copy_dropped_at_the_start_of_a_range_leaves_its_ids_to_the_next(
    tmp_path: Path,
) -> None:
    """The first message of the ids (u1, a1) in the second range is a copy of a messageId
    seen in the first: dropped. The next row with those ids comes without its message (a
    worker sent the first), so its row is decoded again, or u1 and a1 would never be
    linked. The two ranges cut the file's one row group in two."""
    first = [{"type": "identify", "userId": "u0", "messageId": "m1", "traits": {"industry": "x"}}]
    first += [{"type": "page", "userId": "u0", "messageId": f"f{i}"} for i in range(20)]
    second = [
        {"type": "track", "event": "a", "userId": "u1", "anonymousId": "a1", "messageId": "m1"},
        {"type": "track", "event": "a", "userId": "u1", "anonymousId": "a1", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "messageId": "m3"},
        {"type": "identify", "userId": "u1", "messageId": "m4", "traits": {"industry": "software"}},
    ]
    path = tmp_path / "copies.parquet"
    write(path, [{**m, "timestamp": T0} for m in first + second], 25, "timestamps")
    assert row_bounds(pq.ParquetFile(path), len(first)) == [(0, 21), (21, 25)]
    inputs, problems = parallel(path, len(first))
    assert_same(serial(path), (inputs, problems))
    rows = inputs.events.to_pylist()
    assert {(row["message_id"], row["lead_id"]) for row in rows if row["name"] != "page"} == {
        ("m2", "u1")
    }
    assert ("m3", "u1") in {(row["message_id"], row["lead_id"]) for row in rows}


def test_bad_rows_are_numbered_as_in_the_file(tmp_path: Path) -> None:
    good = {"type": "page", "userId": "u1", "messageId": "m", "timestamp": T0}
    no_ids = {"type": "track", "event": "a", "messageId": "x", "timestamp": T0}
    rows = [good] * 30 + [no_ids] + [good] * 30 + [{"type": "shout", "userId": "u"}]
    path = tmp_path / "bad.parquet"
    write(path, rows, 7, "numbers")
    _, problems = parallel(path, 5)
    assert [problem.line for problem in problems] == [31, 62]
    assert [problem.line for problem in serial(path)[1]] == [31, 62]
    assert len(row_bounds(pq.ParquetFile(path), 5)) > 10


@pytest.mark.parametrize(
    ("groups", "per_range", "expected"),
    [
        ([10, 10, 10], 25, [(0, 20), (20, 30)]),  # small groups join
        ([100], 30, [(0, 30), (30, 60), (60, 90), (90, 100)]),  # a large one is cut
        ([5, 100, 5], 40, [(0, 5), (5, 45), (45, 85), (85, 110)]),  # a small one joins
        ([], 10, []),
    ],
)
def test_ranges_follow_the_row_groups(
    tmp_path: Path, groups: list[int], per_range: int, expected: list[tuple[int, int]]
) -> None:
    path = tmp_path / "groups.parquet"
    schema = pa.schema([("type", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for rows in groups:
            writer.write_table(pa.table({"type": ["page"] * rows}, schema=schema))
    assert [pq.ParquetFile(path).metadata.row_group(i).num_rows for i in range(len(groups))] == (
        groups
    )
    assert row_bounds(pq.ParquetFile(path), per_range) == expected


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row made plain JSON, as the row reader did before it read rows in one pass:
    objects from JSON text in `properties`, `traits` and `context`, times as ISO."""
    for column, value in row.items():
        if isinstance(value, datetime):
            row[column] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        elif column in ("traits", "properties", "context") and isinstance(value, str):
            try:
                row[column] = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise MessageError(f"`{column}` is not JSON text: {value[:60]!r}") from None
            if not isinstance(row[column], dict):
                raise MessageError(f"`{column}` must be a JSON object")
    return row


TEXT = st.one_of(st.none(), st.sampled_from(("", "u1", "a1", "Demo", "track", "page", "identify")))
OBJECT_TEXT = st.one_of(
    st.none(), st.sampled_from(("", "{}", '{"plan": "pro"}', '{"n": 1, "m": [1]}', "[1]", "{no"))
)
COLUMNS = {
    "type": st.one_of(st.none(), st.sampled_from(("track", "page", "identify", "group", ""))),
    "userId": TEXT,
    "anonymousId": TEXT,
    "messageId": st.one_of(st.none(), st.sampled_from(("m1", "m2", ""))),
    "event": TEXT,
    "groupId": TEXT,
    "properties": OBJECT_TEXT,
    "traits": OBJECT_TEXT,
    "context": OBJECT_TEXT,
    "Email": TEXT,
    "Plan": st.one_of(st.none(), st.sampled_from(("pro", ""))),
    "Seats": st.one_of(st.none(), st.integers(0, 3)),
}
MAPS = (
    [],
    ["Email=userId"],
    ["Plan=traits.plan"],
    ["Email=userId", "Plan=properties.plan", "Seats=traits.seats"],
    ["traits=properties.t"],
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[pa.Table, ColumnMapping]:
    names = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, unique=True))
    count = draw(st.integers(1, 12))
    columns: dict[str, pa.Array] = {
        name: pa.array([draw(COLUMNS[name]) for _ in range(count)]) for name in names
    }
    if draw(st.booleans()):  # a Parquet timestamp, naive or in UTC, with a missing one
        zone = draw(st.sampled_from((None, "UTC")))
        seconds = [draw(st.one_of(st.none(), st.integers(0, 10**9))) for _ in range(count)]
        moments = [None if s is None else datetime.fromtimestamp(s, UTC) for s in seconds]
        if zone is None:
            moments = [None if m is None else m.replace(tzinfo=None) for m in moments]
        columns["timestamp"] = pa.array(moments, pa.timestamp("us", zone))
    elif draw(st.booleans()):  # an object as a struct
        columns["properties"] = pa.array([{"plan": "pro", "n": i} for i in range(count)])
    specs = [s for s in draw(st.sampled_from(MAPS)) if s.split("=")[0] in columns]
    return pa.table(columns), ColumnMapping.parse(specs)


@given(tables())
@settings(max_examples=200, deadline=None)
def test_a_row_reads_as_the_csv_reader_reads_it_once_plain(
    drawn: tuple[pa.Table, ColumnMapping],
) -> None:
    """Rows are read in one pass over their values; that must be `ColumnMapping.message`
    (the CSV reader's) over the row made plain JSON, row by row, errors included."""
    table, mapping = drawn
    (batch,) = table.combine_chunks().to_batches()
    read = [
        d if isinstance(d, ActivityEvent) else d.reason
        for d in parquet_messages(batch, mapping, RECEIVED)
    ]
    expected: list[ActivityEvent | str] = []
    for row in table.to_pylist():
        try:
            expected.append(decode_message(mapping.message(plain(row)), received_at=RECEIVED))
        except MessageError as exc:
            expected.append(exc.reason)
    assert read == expected
