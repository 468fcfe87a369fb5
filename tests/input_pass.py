"""What the input pass's tests share (JSON Lines and Parquet, each read by workers): a
model, and messages about a few people seen under several ids."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

from qualify.batch.inputs import BatchInputs
from qualify.model import (
    Compare,
    Criteria,
    EngagementRule,
    FitRule,
    LifecycleSettings,
    Qualification,
    ScoringModel,
)

T0 = 1_772_323_200.0
RECEIVED = T0 + 99.0
MODEL = ScoringModel(
    name="jsonl",
    version="1",
    fit=(FitRule("fit", Compare("industry", "equals", "software"), 10),),
    engagement=(
        EngagementRule(name="views", events=("page",), points=5),
        EngagementRule(name="a", events=("a",), points=10),
    ),
    qualification=Qualification(mql=Criteria(score_at_least=10)),
    lifecycle=LifecycleSettings(),
    routing=(),
)
BAD_LINES = (
    b"{not json",
    b'{"type": "track", "event": "a", "messageId": "x"}',
    b"[1, 2]",
    b'{"type": "shout", "userId": "u1", "messageId": "y"}',
)


@st.composite
def lines(draw: st.DrawFn) -> list[bytes]:
    """Messages about a few people, who are seen under several ids (both ids on one
    message, identify, alias) in any order; copies of earlier messageIds; blank and bad
    lines; messages without a timestamp (they take the time the file was received)."""
    out: list[bytes] = []
    for i in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(("track", "page", "identify", "group", "alias", "bad", "")))
        if kind == "bad":
            out.append(draw(st.sampled_from(BAD_LINES)))
            continue
        if kind == "":
            out.append(draw(st.sampled_from((b"", b"   ", b"\t"))))
            continue
        message_id = f"m{draw(st.integers(0, i)) if draw(st.booleans()) else i}"
        message: dict = {"type": kind, "messageId": message_id}
        if draw(st.integers(0, 9)):
            message["timestamp"] = T0 + draw(st.integers(0, 20)) * 3600
        ids = draw(st.sampled_from(("user", "anonymous", "both")))
        if ids != "anonymous" or kind == "alias":
            message["userId"] = f"u{draw(st.integers(0, 3))}"
        if ids != "user" and kind != "alias":
            message["anonymousId"] = f"a{draw(st.integers(0, 3))}"
        if kind == "track":
            message["event"] = draw(st.sampled_from(("a", "A", "b")))
            message["properties"] = {"n": draw(st.integers(0, 3))}
        elif kind == "page":
            message["properties"] = {"path": draw(st.sampled_from(("/p", "/pricing")))}
        elif kind == "identify":
            message["traits"] = {"industry": draw(st.sampled_from(("software", "retail")))}
        elif kind == "group":
            message["groupId"] = f"g{draw(st.integers(0, 1))}"
            message["traits"] = {"plan": "pro"}
        else:
            message["previousId"] = draw(st.sampled_from(("a0", "a1", "u2", "u3")))
        out.append(orjson.dumps(message))
    return out


def assert_same(one: tuple[BatchInputs, list], other: tuple[BatchInputs, list]) -> None:
    assert one[0].events.to_pylist() == other[0].events.to_pylist()
    assert one[0].profiles.to_pylist() == other[0].profiles.to_pylist()
    assert one[1] == other[1]
