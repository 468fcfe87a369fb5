"""A realistic generated dataset for `qualify demo` and the benchmarks.

Leads arrive from several sources and campaigns over a period (90 days by default). Each has
a profile (industry, size, title, country, email) and a latent buying intent that drives how
much it reads, attends, visits pricing, requests demos, clicks emails and uses the product.
Some browse anonymously before they fill a form (so their history merges on identify), some
belong to accounts (group calls). Everything comes from the injected `rng` and `now`: the same
seed gives the same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

from qualify.core.activity import ActivityEvent

__all__ = ["DemoSpec", "demo_model_text", "generate"]

SOURCES = (
    ("google_ads", "q3-search-brand", 0.24),
    ("linkedin", "cfo-compliance-guide", 0.18),
    ("organic", None, 0.22),
    ("webinar_partner", "fintech-summit", 0.10),
    ("trade_show", "saastr-booth", 0.08),
    ("referral", None, 0.08),
    ("newsletter", "monthly-digest", 0.10),
)
INDUSTRIES = (
    "financial services",
    "software",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "government",
    "media",
)
TITLES = (
    "VP Finance",
    "Head of Compliance",
    "CFO",
    "Director of IT",
    "CTO",
    "Finance Manager",
    "Marketing Manager",
    "Analyst",
    "Engineer",
    "Consultant",
    "Student",
    "Intern",
    "Operations Manager",
    "Chief Risk Officer",
)
COUNTRIES = ("US", "GB", "DE", "FR", "NO", "ES", "IN", "BR", "CA", "AU")
FREE_DOMAINS = ("gmail.com", "yahoo.com", "hotmail.com")
CONTENT = (
    ("whitepaper", "EU compliance guide"),
    ("whitepaper", "Cost of manual reporting"),
    ("case study", "How Acme closed books 5 days faster"),
    ("ebook", "Finance automation"),
    ("case study", "Global bank rollout"),
)
PRODUCT_PAGES = tuple(
    f"/product/{p}"
    for p in (
        "reporting",
        "consolidation",
        "audit-trail",
        "integrations",
        "security",
        "workflows",
        "forecasting",
        "api",
    )
)
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DemoSpec:
    leads: int = 5200
    days: int = 90
    accounts: int = 900
    events_per_lead: float = 60.0  # a mean of ~40 messages a lead; intent spreads it widely


def demo_model_text() -> str:
    """The demo model's YAML, shipped inside the package."""
    return resources.files("qualify.examples").joinpath("demo-model.yaml").read_text()


class _Emitter:
    def __init__(self, rng: random.Random, prefix: str) -> None:
        self.rng = rng
        self.prefix = prefix
        self.count = 0

    def message_id(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count:08d}"


def generate(spec: DemoSpec, *, rng: random.Random, now: float) -> Iterator[ActivityEvent]:
    """The demo's messages, lead by lead (each lead's in time order)."""
    start = now - spec.days * DAY
    emit = _Emitter(rng, "demo")
    account_traits = [_account(rng, i) for i in range(spec.accounts)]
    for index in range(spec.leads):
        yield from _lead(index, spec, rng, emit, start, now, account_traits)


def _account(rng: random.Random, index: int) -> dict[str, object]:
    size = int(rng.lognormvariate(5.8, 1.3)) + 5
    return {
        "id": f"acct-{index:05d}",
        "name": f"Company {index}",
        "industry": rng.choice(INDUSTRIES),
        "company_size": size,
        "plan": rng.choice(("none", "trial", "starter")),
    }


def _pick_source(rng: random.Random) -> tuple[str, str | None]:
    roll = rng.random()
    for source, campaign, weight in SOURCES:
        roll -= weight
        if roll <= 0:
            return source, campaign
    return SOURCES[-1][0], SOURCES[-1][1]


def _lead(
    index: int,
    spec: DemoSpec,
    rng: random.Random,
    emit: _Emitter,
    start: float,
    now: float,
    accounts: list[dict[str, object]],
) -> Iterator[ActivityEvent]:
    user_id = f"lead-{index:06d}"
    anonymous_id = f"anon-{index:06d}" if rng.random() < 0.35 else None
    account = rng.choice(accounts)
    source, campaign = _pick_source(rng)
    intent = rng.betavariate(1.1, 5.0)  # most leads lukewarm, a few very engaged
    first = start + rng.random() * (now - start) * 0.9
    title = rng.choice(TITLES)
    domain = rng.choice(FREE_DOMAINS) if rng.random() < 0.2 else f"company{index % 977}.com"
    traits = {
        "email": f"{user_id}@{domain}",
        "first_name": f"Lead{index}",
        "industry": account["industry"],
        "company_size": str(account["company_size"]),  # forms send numbers as text
        "job_title": title,
        "country": rng.choice(COUNTRIES),
        "lead_source": source,
    }
    if campaign:
        traits["campaign"] = campaign
    context = {"campaign": {"source": source, "name": campaign or source}}

    def event(
        kind: str, at: float, name: str = "", props: dict | None = None, **extra: object
    ) -> ActivityEvent:
        known = at >= identified_at or anonymous_id is None
        return ActivityEvent(
            message_id=emit.message_id(),
            type=kind,
            name=name.casefold()
            if kind == "track"
            else (kind if kind in ("page", "screen") else ""),
            timestamp=at,
            user_id=user_id if known else None,
            anonymous_id=anonymous_id,
            event=name,
            properties=props or {},
            context=context,
            **extra,  # type: ignore[arg-type]
        )

    identified_at = first + (rng.random() * 3 * DAY if anonymous_id else 0.0)
    timeline: list[ActivityEvent] = []
    timeline.append(
        ActivityEvent(
            message_id=emit.message_id(),
            type="identify",
            name="",
            timestamp=identified_at,
            user_id=user_id,
            anonymous_id=anonymous_id,
            traits=traits,
            context=context,
        )
    )
    if rng.random() < 0.6:
        timeline.append(
            ActivityEvent(
                message_id=emit.message_id(),
                type="group",
                name="",
                timestamp=identified_at + 60,
                user_id=user_id,
                group_id=str(account["id"]),
                traits={k: v for k, v in account.items() if k != "id"},
            )
        )
    span = max(now - first, DAY)
    count = max(1, int(rng.expovariate(1.0) * spec.events_per_lead * (0.4 + intent * 1.5)))
    for _ in range(count):
        at = first + rng.random() * span
        timeline.append(_activity(rng, intent, at, event))
    if intent > 0.45 and rng.random() < 0.5:  # a pricing visit pair inside a week
        at = first + rng.random() * span * 0.8
        for gap in (0.0, rng.random() * 6 * DAY):
            timeline.append(event("page", min(at + gap, now), "Pricing", {"path": "/pricing"}))
    if rng.random() < 0.08:  # a job seeker, not a buyer
        for _ in range(rng.randint(1, 4)):
            timeline.append(
                event("page", first + rng.random() * span, "Careers", {"path": "/careers"})
            )
    if intent > 0.6 and rng.random() < 0.5:
        timeline.append(event("track", first + rng.random() * span, "Demo Requested"))
    timeline.sort(key=lambda e: e.timestamp)
    yield from (e for e in timeline if e.timestamp <= now)


def _activity(
    rng: random.Random, intent: float, at: float, event: Callable[..., ActivityEvent]
) -> ActivityEvent:
    """One behaviour; the valuable ones (content, webinars, pricing, product use) grow with
    the lead's intent, the rest is browsing and email."""
    roll = rng.random()
    valuable = 0.02 + 0.18 * intent
    if roll < valuable:
        pick = rng.random()
        if pick < 0.25:
            content_type, title = rng.choice(CONTENT)
            return event(
                "track", at, "Content Downloaded", {"content_type": content_type, "title": title}
            )
        if pick < 0.40:
            return event(
                "track", at, "Webinar Attended", {"webinar": "Closing the books in 3 days"}
            )
        if pick < 0.60:
            return event(
                "page", at, "Pricing", {"path": rng.choice(("/pricing", "/pricing/enterprise"))}
            )
        if pick < 0.70:
            return event("track", at, "Account Created", {"plan": "trial"})
        if pick < 0.78:
            return event("track", at, "Teammate Invited", {"role": "member"})
        return event(
            "track",
            at,
            "Feature Used",
            {"feature": rng.choice(("reports", "reports", "dashboards", "exports"))},
        )
    roll = rng.random()
    if roll < 0.40:
        path = rng.choice(("/", "/blog/close-faster", "/blog/audit-ready", "/about", "/customers"))
        return event("page", at, path.strip("/") or "Home", {"path": path})
    if roll < 0.60:
        return event("page", at, "Product", {"path": rng.choice(PRODUCT_PAGES)})
    if roll < 0.78:
        return event("track", at, "Email Opened", {"campaign": "monthly-digest"})
    if roll < 0.88:
        return event(
            "track",
            at,
            rng.choice(("Email Clicked", "Email Link Clicked")),
            {"campaign": "monthly-digest"},
        )
    return event("page", at, "Docs", {"path": "/docs/getting-started"})
