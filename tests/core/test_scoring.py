"""Each rule kind, criterion, tier and grade, checked against hand-computed scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import DAY, at, identify, model, page, track
from qualify.core.scoring import evaluate

FIXTURES = Path(__file__).parent.parent / "fixtures"
FS_PROFILE = {"industry": "Financial Services", "company_size": "800"}


def worked_example():
    return model((FIXTURES / "worked_example.yaml").read_text())


def seed_events(second_pricing_day: float) -> list:
    return [
        track("Content Downloaded", 0, content_type="whitepaper", topic="EU compliance"),
        track("Webinar Attended", 1),
        page("/pricing", 2),
        page("/pricing/enterprise", second_pricing_day),
    ]


def test_the_seeds_worked_example_qualifies_at_105_points() -> None:
    result = evaluate(worked_example(), FS_PROFILE, seed_events(8.0), at(9))
    assert result.fit == 25
    assert result.engagement == 80
    assert result.score == 105
    assert result.mql is True
    assert result.rule_points() == {
        "target industry": 15,
        "mid-sized company": 10,
        "compliance whitepaper": 30,
        "webinar attended": 20,
        "pricing page twice in a week": 30,
    }


def test_the_same_pricing_visits_eight_days_apart_earn_nothing() -> None:
    result = evaluate(worked_example(), FS_PROFILE, seed_events(10.0), at(11))
    assert result.score == 75
    assert result.mql is False
    assert "pricing page twice in a week" not in result.rule_points()


def test_within_is_inclusive_of_exactly_seven_days() -> None:
    result = evaluate(worked_example(), FS_PROFILE, seed_events(9.0), at(10))
    assert result.score == 105


def test_only_events_up_to_as_of_count() -> None:
    events = seed_events(8.0)
    assert evaluate(worked_example(), FS_PROFILE, events, at(7)).score == 75
    assert evaluate(worked_example(), FS_PROFILE, events, at(8)).score == 105
    assert evaluate(worked_example(), FS_PROFILE, events, at(-1)).score == 25


EACH = """
name: t
version: 1
engagement:
  - name: clicks
    event: [Email Clicked, Email Link Clicked]
    points: 5
    max_points: 12
  - name: unsubscribed
    event: Unsubscribed
    points: -30
  - name: careers
    event: page
    where: {path: {starts_with: /careers}}
    points: -10
    max_points: 15
"""


def test_points_per_event_with_a_cap_and_case_insensitive_names() -> None:
    compiled = model(EACH)
    events = [track("email clicked", 0), track("EMAIL LINK CLICKED", 1)]
    assert evaluate(compiled, {}, events, at(2)).engagement == 10
    events.append(track("Email Clicked", 2))
    result = evaluate(compiled, {}, events, at(3))
    assert result.engagement == 12
    (clicks,) = result.contributions
    assert clicks.capped and clicks.raw_points == 15 and len(clicks.events) == 3


def test_negative_points_and_a_negative_cap() -> None:
    compiled = model(EACH)
    events = [track("Unsubscribed", 0)] + [page("/careers/jobs", d) for d in range(3)]
    result = evaluate(compiled, {}, events, at(4))
    assert result.rule_points() == {"unsubscribed": -30, "careers": -15}
    assert result.engagement == -45


KINDS = """
name: t
version: 1
engagement:
  - name: signed up
    event: Account Created
    once: true
    points: 10
  - name: categories
    event: Product Category Viewed
    distinct: category
    times: 3
    points: 20
  - name: each new category
    event: Product Category Viewed
    distinct: category
    points: 2
  - name: three reports in two days
    event: Report Run
    times: 3
    within: 2d
    points: 25
  - name: two regions in a day
    event: Region Viewed
    distinct: region
    times: 2
    within: 1d
    points: 7
  - name: five logins
    event: Logged In
    times: 5
    points: 15
"""


def test_once_gives_points_for_the_first_occurrence_only() -> None:
    events = [track("Account Created", 3), track("Account Created", 1)]
    (c,) = evaluate(model(KINDS), {}, events, at(5)).contributions
    assert c.rule == "signed up" and c.points == 10
    assert c.events == (events[1].message_id,)  # the earliest, though it arrived second


def test_distinct_counts_distinct_values_case_insensitively() -> None:
    events = [
        track("Product Category Viewed", d, category=c)
        for d, c in enumerate(["Shoes", "shoes", "Bags", "hats"])
    ]
    points = evaluate(model(KINDS), {}, events[:3], at(9)).rule_points()
    assert points == {"each new category": 4}
    points = evaluate(model(KINDS), {}, events, at(9)).rule_points()
    assert points == {"categories": 20, "each new category": 6}


def test_distinct_ignores_events_without_the_property() -> None:
    events = [track("Product Category Viewed", d) for d in range(5)]
    assert evaluate(model(KINDS), {}, events, at(9)).score == 0


def test_times_within_a_window() -> None:
    compiled = model(KINDS)
    spread = [track("Report Run", d) for d in (0, 1.5, 3, 4.5)]
    assert evaluate(compiled, {}, spread, at(9)).score == 0
    burst = [*spread, track("Report Run", 4.9)]  # 3, 4.5, 4.9 fall within 2 days
    (c,) = evaluate(compiled, {}, burst, at(9)).contributions
    assert c.points == 25 and c.events == (burst[-1].message_id,)


def test_times_with_distinct_within_a_window() -> None:
    compiled = model(KINDS)
    same = [track("Region Viewed", d, region="EU") for d in (0, 0.2, 0.4)]
    assert evaluate(compiled, {}, same, at(9)).score == 0
    other = [*same, track("Region Viewed", 3, region="US")]
    assert evaluate(compiled, {}, other, at(9)).score == 0
    near = [*other, track("Region Viewed", 3.5, region="eu")]
    assert evaluate(compiled, {}, near, at(9)).rule_points() == {"two regions in a day": 7}


def test_times_without_window_counts_all_history() -> None:
    compiled = model(KINDS)
    logins = [track("Logged In", d * 10) for d in range(5)]
    assert evaluate(compiled, {}, logins[:4], at(60)).score == 0
    (c,) = evaluate(compiled, {}, logins, at(60)).contributions
    assert c.points == 15


DECAY = """
name: t
version: 1
fit:
  - name: cfo
    when: {job_title: CFO}
    points: 10
engagement:
  - name: webinar
    event: Webinar Attended
    points: 40
    max_points: 50
  - name: newsletter open
    event: Email Opened
    points: 4
    expires_after: 30d
  - name: pricing twice
    event: page
    times: 2
    within: 7d
    points: 20
    expires_after: 14d
decay:
  engagement_half_life: 30d
"""


def test_decay_halves_engagement_every_half_life_not_fit() -> None:
    result = evaluate(model(DECAY), {"job_title": "cfo"}, [track("Webinar Attended", 0)], at(30))
    assert result.fit == 10
    assert result.engagement == pytest.approx(20, abs=1e-9)
    result = evaluate(model(DECAY), {}, [track("Webinar Attended", 0)], at(60))
    assert result.engagement == pytest.approx(10, abs=1e-9)


def test_cap_applies_after_decay() -> None:
    events = [track("Webinar Attended", 0), track("Webinar Attended", 30)]
    (c,) = evaluate(model(DECAY), {}, events, at(30)).contributions
    assert c.points == pytest.approx(50)  # 20 + 40 = 60 after decay, capped at 50
    assert c.capped
    (c,) = evaluate(model(DECAY), {}, events, at(60)).contributions
    assert c.points == pytest.approx(10 + 20)  # 30 below the cap
    assert not c.capped


def test_expiry_drops_points_older_than_the_limit() -> None:
    compiled = model(DECAY.split("decay:")[0])
    opens = [track("Email Opened", d) for d in (0, 20, 40)]
    result = evaluate(compiled, {}, opens, at(45))
    assert result.rule_points() == {"newsletter open": 8}  # day 0 is 45 days old
    (c,) = result.contributions
    assert c.expired == 1
    assert evaluate(compiled, {}, opens, at(50)).rule_points() == {"newsletter open": 8}
    assert evaluate(compiled, {}, opens, at(70)).rule_points() == {"newsletter open": 4}
    assert evaluate(compiled, {}, opens, at(71)).score == 0


def test_a_times_rule_stays_fresh_while_the_behaviour_repeats() -> None:
    compiled = model(DECAY.split("decay:")[0])
    visits = [page("/pricing", d) for d in range(0, 40, 3)]  # every 3 days for 40 days
    assert evaluate(compiled, {}, visits, at(40)).rule_points() == {"pricing twice": 20}
    assert evaluate(compiled, {}, visits, at(39 + 14)).rule_points() == {"pricing twice": 20}
    assert evaluate(compiled, {}, visits, at(39 + 15)).score == 0


QUALIFY = """
name: t
version: 1
fit:
  - name: target industry
    when: {industry: software}
    points: 30
engagement:
  - name: signed up
    event: Account Created
    once: true
    points: 10
  - name: invited
    event: Teammate Invited
    points: 15
  - name: webinar
    event: Webinar Attended
    points: 50
qualification:
  mql:
    fit_at_least: 20
    engagement_at_least: 50
  pql:
    all: [signed up, invited]
  tiers:
    hot: {score_at_least: 90}
    engaged: {any: [webinar, invited]}
  grades:
    A: {fit_at_least: 30}
    B: {all: [target industry]}
    D: {}
"""


def test_fit_and_engagement_must_come_together() -> None:
    compiled = model(QUALIFY)
    webinar = [track("Webinar Attended", 0)]
    assert not evaluate(compiled, {"industry": "retail"}, webinar, at(1)).mql
    assert not evaluate(compiled, {"industry": "software"}, [], at(1)).mql
    assert evaluate(compiled, {"industry": "software"}, webinar, at(1)).mql


def test_pql_needs_all_named_rules_to_hold() -> None:
    compiled = model(QUALIFY)
    assert not evaluate(compiled, {}, [track("Account Created", 0)], at(1)).pql
    both = [track("Account Created", 0), track("Teammate Invited", 1)]
    assert evaluate(compiled, {}, both, at(2)).pql


def test_tiers_first_match_wins_and_grades_use_fit() -> None:
    compiled = model(QUALIFY)
    hot = evaluate(
        compiled,
        {"industry": "software"},
        [track("Webinar Attended", 0), track("Teammate Invited", 0)],
        at(1),
    )
    assert (hot.score, hot.tier, hot.grade) == (95, "hot", "A")
    engaged = evaluate(compiled, {}, [track("Teammate Invited", 0)], at(1))
    assert (engaged.tier, engaged.grade) == ("engaged", "D")
    nothing = evaluate(compiled, {}, [], at(1))
    assert (nothing.tier, nothing.grade, nothing.mql, nothing.pql) == (None, "D", False, False)


def test_score_at_least_threshold() -> None:
    compiled = model(
        QUALIFY.replace(
            """    fit_at_least: 20
    engagement_at_least: 50""",
            "    score_at_least: 80",
        )
    )
    assert evaluate(compiled, {"industry": "software"}, [track("Webinar Attended", 0)], at(1)).mql
    assert not evaluate(compiled, {}, [track("Webinar Attended", 0)], at(1)).mql


def test_identify_messages_do_not_score_as_events() -> None:
    compiled = model(QUALIFY)
    assert evaluate(compiled, {}, [identify("u1", 0, industry="software")], at(1)).score == 0


def test_late_events_slot_into_place() -> None:
    compiled = worked_example()
    events = seed_events(8.0)
    shuffled = [events[3], events[0], events[2], events[1]]
    a = evaluate(compiled, FS_PROFILE, events, at(9))
    b = evaluate(compiled, FS_PROFILE, shuffled, at(9))
    assert a == b
    assert DAY == 86400.0


def test_stateless_scoring_counts_a_repeated_message_id_once() -> None:
    from helpers import message
    from qualify.service.stateless import score_events

    compiled = model(QUALIFY)
    twice = [
        message(type="track", userId="u", event="Webinar Attended", messageId="e1", timestamp=at(d))
        for d in (0, 1)
    ]
    ((lead, result, _),) = list(score_events(compiled, twice, at(2)))
    assert (lead, result.engagement) == ("u", 50)


def test_stateless_scoring_as_of_ignores_later_profile_messages() -> None:
    from qualify.service.stateless import score_events

    compiled = model(QUALIFY)
    messages = [identify("u", 5, industry="software")]
    ((_, before, _),) = list(score_events(compiled, messages, at(1)))
    ((_, after, _),) = list(score_events(compiled, messages, at(6)))
    assert (before.fit, after.fit) == (0, 30)


def test_distinct_values_compare_as_the_reference_says() -> None:
    """docs/model-language.md, `distinct`: case and surrounding spaces ignored, numbers by
    value, never a number and a text, `true` counting as 1 — each example as one event."""
    m = model(
        "name: d\nversion: 1\nengagement:\n"
        "  - name: views\n    event: Viewed\n    distinct: v\n    points: 1\n"
    )
    values = [" Pricing ", "pricing", 1, 1.0, "1", "1.0", True, "true", False, 0, [1, 2],
              [1, 2], None, ""]  # fmt: skip
    events = [track("Viewed", i * 0.01, v=value) for i, value in enumerate(values)]
    # pricing, 1 (1.0, true), "1", "1.0", "true", 0 (false), [1, 2]; null and "" not at all
    assert evaluate(m, {}, events, at(1)).engagement == 7
