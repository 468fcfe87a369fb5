"""A JSON Lines file read by worker processes gives exactly the input pass of the same file
read in-process: the same rule rows and profiles, the same bad lines with the same numbers —
with ranges small enough that ids, copies of a messageId and merges cross between them."""

from __future__ import annotations

import gzip
import itertools
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from input_pass import MODEL, RECEIVED, T0, assert_same, lines
from qualify.batch.inputs import BatchInputs, event_files, from_files, from_jsonl, from_messages
from qualify.batch.jsonl import chunk_bounds
from qualify.service.files import ColumnMapping, LineProblem, Problems, read_jsonl


def serial(path: Path) -> tuple[BatchInputs, list]:
    problems = Problems()
    with path.open("rb") as file:
        inputs = from_messages(MODEL, read_jsonl(file, problems, received_at=RECEIVED), T0)
    return inputs, problems.items


def parallel(path: Path, chunk_bytes: int) -> tuple[BatchInputs, list]:
    problems = Problems()
    inputs = from_jsonl(
        MODEL, path, T0, problems, received_at=RECEIVED, workers=2, chunk_bytes=chunk_bytes
    )
    return inputs, problems.items


@pytest.mark.slow
def test_workers_read_a_file_exactly_as_one_process_does(tmp_path: Path) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(lines(), st.integers(1, 300), st.booleans())
    def check(content: list[bytes], chunk_bytes: int, trailing_newline: bool) -> None:
        path = tmp_path / "messages.jsonl"
        path.write_bytes(b"\n".join(content) + (b"\n" if trailing_newline else b""))
        assert_same(serial(path), parallel(path, chunk_bytes))

    check()


def test_a_copy_dropped_at_the_start_of_a_range_leaves_its_ids_to_the_next(
    tmp_path: Path,
) -> None:
    """The first message of the ids (u1, a1) in the second range is a copy of a messageId
    seen in the first: dropped. The next message with those ids arrives without its line
    (a worker sent the first) and must be read again, or u1 and a1 would never be linked."""
    first = [{"type": "identify", "userId": "u0", "messageId": "m1", "traits": {"industry": "x"}}]
    first += [{"type": "page", "userId": "u0", "messageId": f"f{i}"} for i in range(20)]
    second = [
        {"type": "track", "event": "a", "userId": "u1", "anonymousId": "a1", "messageId": "m1"},
        {"type": "track", "event": "a", "userId": "u1", "anonymousId": "a1", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "messageId": "m3"},
        {"type": "identify", "userId": "u1", "messageId": "m4", "traits": {"industry": "software"}},
    ]
    path = tmp_path / "copies.jsonl"
    text = b"".join(orjson.dumps({**m, "timestamp": T0}) + b"\n" for m in first + second)
    path.write_bytes(text)
    cut = text.index(b'{"type":"track"')
    chunk_bytes = cut - 1  # the first range ends at the line the cut falls in: just before
    assert [start for start, _ in chunk_bounds(path, chunk_bytes)][1] == cut
    inputs, problems = parallel(path, chunk_bytes)
    assert_same(serial(path), (inputs, problems))
    rows = inputs.events.to_pylist()
    assert {(row["message_id"], row["lead_id"]) for row in rows if row["name"] != "page"} == {
        ("m2", "u1")
    }
    assert ("m3", "u1") in {(row["message_id"], row["lead_id"]) for row in rows}


def test_bad_lines_are_numbered_as_in_the_file(tmp_path: Path) -> None:
    good = orjson.dumps({"type": "page", "userId": "u1", "messageId": "m", "timestamp": T0})
    content = [good] * 30 + [b"", b"{not json"] + [good] * 30 + [b'{"type": "track"}']
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(content) + b"\n")
    _, problems = parallel(path, 200)
    assert [problem.line for problem in problems] == [32, 63]
    assert len(chunk_bounds(path, 200)) > 10


@pytest.mark.slow
def test_a_file_cut_into_parts_reads_as_the_one_file(tmp_path: Path) -> None:
    """A folder of part files (some gzipped) is one history: cut anywhere, read by workers
    where they can read (not the gzipped parts), it gives the one file's input pass, and
    each bad line is reported in its part, numbered from the part's first line."""

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        lines(),
        st.lists(st.integers(0, 60), max_size=3),
        st.lists(st.booleans(), min_size=4, max_size=4),
        st.integers(1, 300),
    )
    def check(content: list[bytes], cuts: list[int], gzipped: list[bool], chunk: int) -> None:
        whole = tmp_path / "whole.jsonl"
        whole.write_bytes(b"".join(line + b"\n" for line in content))
        folder = tmp_path / f"parts-{uuid.uuid4().hex}"
        folder.mkdir()
        bounds = [0, *sorted(min(c, len(content)) for c in cuts), len(content)]
        starts = {}
        for i, (start, end) in enumerate(itertools.pairwise(bounds)):
            data = b"".join(line + b"\n" for line in content[start:end])
            name = f"part-{i:05}.jsonl" + (".gz" if gzipped[i] else "")
            (folder / name).write_bytes(gzip.compress(data) if gzipped[i] else data)
            starts[name] = start
        files = event_files([folder])
        assert [f.gzipped for f in files] == gzipped[: len(files)]
        found: dict[Path, Problems] = {}
        inputs = from_files(
            MODEL,
            files,
            T0,
            lambda f: found.setdefault(f.path, Problems()),
            ColumnMapping({}),
            received_at=RECEIVED,
            workers=2,
            chunk_bytes=chunk,
        )
        numbered = [
            (starts[path.name] + p.line, p.reason) for path, ps in found.items() for p in ps.items
        ]
        one, problems = serial(whole)
        assert_same((one, [LineProblem(*p) for p in numbered]), (inputs, problems))

    check()


def test_a_copy_dropped_at_the_start_of_a_gzipped_file_leaves_its_ids_to_the_next(
    tmp_path: Path,
) -> None:
    """As with ranges: the second gzipped file starts with a copy of a messageId of the
    first, carrying ids (u1, a1) first seen there; the next line with those ids comes
    without its message and is read again from the gzipped file."""
    first = [{"type": "identify", "userId": "u0", "messageId": "m1", "traits": {"industry": "x"}}]
    second = [
        {"type": "track", "event": "a", "userId": "u1", "anonymousId": "a1", "messageId": "m1"},
        {"type": "page", "userId": "u1", "anonymousId": "a1", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "messageId": "m3"},
    ]
    folder = tmp_path / "gz"
    folder.mkdir()
    for name, part in (("part-0.jsonl.gz", first), ("part-1.jsonl.gz", second)):
        data = b"".join(orjson.dumps({**m, "timestamp": T0}) + b"\n" for m in part)
        (folder / name).write_bytes(gzip.compress(data))
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(gzip.decompress(p.read_bytes()) for p in sorted(folder.iterdir())))
    found: dict[Path, Problems] = {}
    inputs = from_files(
        MODEL,
        event_files([folder]),
        T0,
        lambda f: found.setdefault(f.path, Problems()),
        ColumnMapping({}),
        received_at=RECEIVED,
        workers=2,
    )
    assert_same(serial(whole), (inputs, []))
    rows = {(row["message_id"], row["lead_id"]) for row in inputs.events.to_pylist()}
    assert rows == {("m2", "u1"), ("m3", "u1")}
