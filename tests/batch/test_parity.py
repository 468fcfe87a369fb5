"""Batch equals live: random models and histories, scored by the live engine (`qualify
score`'s code) and by the compiled plan on DuckDB, must agree on every lead — fit,
engagement, score, flags, tier, grade and each rule's points (exact, or within 1e-9 where
decay sums floating-point terms in another order)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from helpers import assert_batch_equals_live, examples
from qualify.batch.engine import Backend, BatchRun
from qualify.batch.inputs import from_messages
from qualify.batch.plan import RULE_PREFIX
from qualify.core.activity import ActivityEvent, decode_message
from qualify.core.scoring import CompiledModel
from qualify.model import (
    Compare,
    EngagementRule,
    FitRule,
    LifecycleSettings,
    Qualification,
    ScoringModel,
)
from qualify.service.stateless import score_events
from strategies import AS_OF, DAY, T0, histories, models


def batch_scores(
    backend: Backend, model: ScoringModel, events: list[ActivityEvent], as_of: float
) -> dict:
    inputs = from_messages(model, events, as_of)
    rows = BatchRun.of_inputs(model, backend, inputs, as_of).rows()
    return {row["lead_id"]: row for row in rows}


def assert_agree(
    backend: Backend, model: ScoringModel, events: list[ActivityEvent], as_of: float
) -> None:
    live = {lead: score for lead, score, _ in score_events(CompiledModel(model), events, as_of)}
    assert_batch_equals_live(model, live, batch_scores(backend, model, events, as_of))


@pytest.mark.slow
def test_every_engine_agrees_with_the_live_engine(backend: Backend) -> None:
    @settings(
        max_examples=examples(backend, 120),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(models(), histories(), AS_OF)
    def check(model: ScoringModel, events: list[ActivityEvent], as_of: float) -> None:
        assert_agree(backend, model, events, as_of)

    check()


def _pricing(day: float, message_id: str, user: str = "u1") -> ActivityEvent:
    return decode_message(
        {
            "type": "page",
            "userId": user,
            "messageId": message_id,
            "timestamp": T0 + day * DAY,
            "properties": {"path": "/pricing"},
        }
    )


@pytest.mark.parametrize(
    ("days", "holds"),
    [((0, 7), True), ((0, 7.5), False), ((0, 0), True), ((0, 3, 11), True), ((0, 8, 16), False)],
)
def test_window_bounds_and_ties_match_the_seeds_example(
    backend: Backend, days: tuple, holds: bool
) -> None:
    """ "Pricing page twice within 7 days": a window is inclusive at both ends."""
    rule = EngagementRule(
        "pricing twice",
        ("page",),
        30,
        Compare("path", "starts_with", "/pricing"),
        times=2,
        within=7 * DAY,
        expires_after=30 * DAY,
    )
    model = ScoringModel(
        "m", "1", (), (rule,), Qualification(), LifecycleSettings(), (), half_life=60 * DAY
    )
    events = [_pricing(d, f"m{i}") for i, d in enumerate(days)]
    as_of = T0 + 20 * DAY
    assert_agree(backend, model, events, as_of)
    row = batch_scores(backend, model, events, as_of)["u1"]
    assert (row[RULE_PREFIX + "pricing twice"] is not None) is holds


@pytest.mark.postgres
def test_postgres_sends_only_leads_with_rare_values_to_the_live_engine(
    postgres_backend: Backend,
) -> None:
    """PostgreSQL cannot call Python: a lead whose path is `/straße` (casefolded by Python,
    not by `lower()`) is scored by the live engine; a lead with plain ASCII data is not."""
    rule = EngagementRule("ss", ("page",), 10, Compare("path", "contains", "SS"))
    model = ScoringModel("m", "1", (), (rule,), Qualification(), LifecycleSettings(), ())
    events = [
        _pricing(1, "m1", user="plain"),
        decode_message(
            {
                "type": "page",
                "userId": "odd",
                "messageId": "m2",
                "timestamp": T0 + DAY,
                "properties": {"path": "/straße"},
            }
        ),
    ]
    as_of = T0 + 5 * DAY
    run = BatchRun.of_inputs(model, postgres_backend, from_messages(model, events, as_of), as_of)
    rows = {row["lead_id"]: row for row in run.rows()}
    assert run.live_leads == 1
    assert rows["odd"]["rule:ss"] == 10.0  # "straße".casefold() contains "ss"
    assert rows["plain"]["rule:ss"] is None


def test_an_empty_history_scores_no_leads(backend: Backend) -> None:
    """No messages: no leads, on every engine (empty tables keep their column types)."""
    fit = FitRule("f", Compare("industry", "equals", "software"), 10)
    rule = EngagementRule("e", ("a",), 5)
    model = ScoringModel("m", "1", (fit,), (rule,), Qualification(), LifecycleSettings(), ())
    assert batch_scores(backend, model, [], T0) == {}
