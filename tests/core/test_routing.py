"""The routing engine: rule order, strategies, capacity, availability and account owners."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from helpers import at, model
from qualify.core.routing import Roster, Router, RoutingInput
from qualify.core.scoring import evaluate

FIXTURES = Path(__file__).parent.parent / "fixtures"

ROUTING = """
name: routing
version: "1"
fit:
  - {name: big, when: {company_size: {gte: 1000}}, points: 10}
qualification:
  mql: {score_at_least: 0}
routing:
  - name: fs nurture
    when: {industry: financial services, grade: {in: [B, C]}}
    nurture: fs-compliance-track
  - name: enterprise
    when: {company_size: {gte: 1000}}
    assign: {team: enterprise, strategy: round_robin, members: [ana, ben, chloe]}
  - name: weighted
    when: {region: {equals: emea}}
    assign:
      team: emea
      strategy: weighted
      members: [{name: fay, weight: 2}, {name: gus, weight: 1}]
  - name: capped
    when: {region: {equals: apac}}
    assign:
      team: apac
      strategy: capacity
      members: [{name: hal, capacity: 2}, {name: ida, capacity: 1}]
  - name: owners
    when: {region: {equals: amer}}
    assign: {team: amer, strategy: round_robin, members: [jo, kim], account_owner: true}
  - name: everyone else
    assign: {team: sdr, strategy: round_robin, members: [dan, eve]}
"""


def router() -> Router:
    return Router(model(ROUTING).model.routing)


def lead(n: int, account: str | None = None, **profile: object) -> RoutingInput:
    return RoutingInput(
        f"lead-{n}", profile, 50.0, 10.0, 40.0, "warm", "B", "webinar", account_id=account
    )


def route_many(r: Router, roster: Roster, leads: list[RoutingInput], **kw: object) -> list:
    decisions = []
    for item in leads:
        decision = r.route(item, roster, at(0), **kw)  # type: ignore[arg-type]
        roster.record(decision)
        decisions.append(decision)
    return decisions


def test_the_worked_example_routes_to_the_financial_services_nurture_campaign() -> None:
    compiled = model((FIXTURES / "worked_example.yaml").read_text())
    profile = {"industry": "Financial Services", "company_size": "800"}
    score = evaluate(compiled, profile, [], at(1))
    item = RoutingInput("p", profile, score.score, score.fit, score.engagement, None, None, None)
    decision = Router(compiled.model.routing).route(item, Roster(), at(1))
    assert (decision.kind, decision.campaign, decision.rule) == (
        "nurture",
        "fs-compliance-track",
        "financial services nurture",
    )


def test_the_first_rule_that_holds_routes_and_computed_fields_count() -> None:
    r = router()
    fs = r.route(lead(1, industry="Financial Services", company_size=5000), Roster(), at(0))
    assert fs.kind == "nurture" and fs.campaign == "fs-compliance-track"  # grade B holds
    graded_a = RoutingInput("x", {"industry": "financial services"}, 1, 1, 0, None, "A", None)
    assert r.route(graded_a, Roster(), at(0)).rule == "everyone else"
    assert r.route(lead(2, company_size="1200"), Roster(), at(0)).rule == "enterprise"


def test_round_robin_is_fair_over_300_leads() -> None:
    roster = Roster()
    decisions = route_many(router(), roster, [lead(n, company_size=2000) for n in range(300)])
    counts = Counter(d.member for d in decisions)
    assert set(counts) == {"ana", "ben", "chloe"}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert [d.member for d in decisions[:4]] == ["ana", "ben", "chloe", "ana"]


def test_round_robin_skips_unavailable_members_and_stays_fair_among_the_rest() -> None:
    roster = Roster(unavailable={"ben"})
    decisions = route_many(router(), roster, [lead(n, company_size=2000) for n in range(100)])
    counts = Counter(d.member for d in decisions)
    assert counts == {"ana": 50, "chloe": 50}
    assert "ben: unavailable" in decisions[0].skipped
    roster.unavailable.clear()  # ben is back: he was assigned least recently, so he is next
    assert router().route(lead(101, company_size=2000), roster, at(0)).member == "ben"


def test_weighted_gives_each_member_their_share_exactly() -> None:
    decisions = route_many(router(), Roster(), [lead(n, region="EMEA") for n in range(300)])
    assert Counter(d.member for d in decisions) == {"fay": 200, "gus": 100}


def test_capacity_skips_members_at_their_limit_then_the_next_rule_takes_over() -> None:
    roster = Roster()
    decisions = route_many(router(), roster, [lead(n, region="apac") for n in range(4)])
    assert [d.member for d in decisions] == ["hal", "ida", "hal", "dan"]
    assert decisions[3].rule == "everyone else"
    assert (
        "rule `capped`: no member of apac can take it "
        "(hal: at capacity (2 open MQLs); ida: at capacity (1 open MQLs))"
    ) in decisions[3].skipped
    roster.release("ida")  # ida's MQL was worked: she has room again
    assert router().route(lead(9, region="apac"), roster, at(0)).member == "ida"


def test_account_owner_first_and_the_first_assignee_becomes_owner() -> None:
    roster = Roster()
    first, second, other = route_many(
        router(),
        roster,
        [lead(1, "acme", region="amer"), lead(2, "acme", region="amer"), lead(3, region="amer")],
    )
    assert first.member == "jo" and first.owner_of == "acme"
    assert second.member == "jo" and second.strategy == "account_owner"
    assert other.member == "kim"
    roster.unavailable.add("jo")
    fallback = router().route(lead(4, "acme", region="amer"), roster, at(0))
    assert fallback.member == "kim" and "jo (account owner): unavailable" in fallback.skipped


def test_excluded_members_are_skipped_and_no_rule_leaves_the_lead_unrouted() -> None:
    r = Router(model(ROUTING.split("  - name: everyone else")[0]).model.routing)
    roster = Roster(unavailable={"hal"}, open_mqls={"ida": 1})
    decision = r.route(lead(1, region="apac"), roster, at(0))
    assert decision.kind == "unrouted" and decision.member is None
    assert decision.reason == "no rule could take the lead"
    swapped = r.route(lead(2, company_size=1000), Roster(), at(0), exclude=frozenset({"ana"}))
    assert swapped.member == "ben"


@given(
    unavailable=st.sets(st.sampled_from(["ana", "ben", "chloe"]), max_size=2),
    leads=st.integers(1, 60),
)
def test_round_robin_counts_differ_by_at_most_one_among_available_members(
    unavailable: set[str], leads: int
) -> None:
    roster = Roster(unavailable=set(unavailable))
    decisions = route_many(router(), roster, [lead(n, company_size=5000) for n in range(leads)])
    counts = Counter(d.member for d in decisions)
    available = {"ana", "ben", "chloe"} - unavailable
    assert set(counts) <= available
    full = [counts.get(m, 0) for m in available]
    assert max(full) - min(full) <= 1
