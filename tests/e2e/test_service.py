"""The HTTP service end to end: a real server on loopback, real clients (the official Segment
SDK among them), real SQLite and PostgreSQL stores."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import orjson
import pytest
from segment.analytics import Client
from sqlalchemy import create_engine, text

from serving import Service, start_service, stop_service

DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_official_segment_sdk_sends_and_the_lead_qualifies(service: Service) -> None:
    """identify, track, page, group and alias through `segment-analytics-python` pointed at
    our host: the seeds' worked example scores 105 and becomes an MQL."""
    user, anonymous = unique("user"), unique("anon")
    errors: list[Exception] = []
    sdk = Client(
        service.keys["write"],
        host=service.base,
        sync_mode=True,
        gzip=True,
        max_retries=1,
        on_error=lambda e, _batch: errors.append(e),
    )
    # browsing before sign-up, as an anonymous visitor
    sdk.page(
        anonymous_id=anonymous, name="Pricing", properties={"path": "/pricing"}, timestamp=day(2)
    )
    sdk.alias(previous_id=anonymous, user_id=user, timestamp=day(2.5))
    sdk.identify(user, {"industry": "Financial Services", "company_size": 800}, timestamp=day(0))
    sdk.group(user, "acme-bank", {"name": "Acme Bank"}, timestamp=day(0))
    sdk.track(
        user,
        "Content Downloaded",
        {"content_type": "whitepaper", "topic": "EU compliance"},
        timestamp=day(0),
    )
    sdk.track(user, "Webinar Attended", timestamp=day(1))
    sdk.page(
        user,
        name="Enterprise pricing",
        properties={"path": "/pricing/enterprise"},
        timestamp=day(5),
    )
    sdk.flush()
    assert errors == []

    with service.client("read") as api:
        lead = api.get(f"/api/leads/{user}").raise_for_status().json()
        by_alias = api.get(f"/api/leads/anon:{anonymous}")
    assert lead["score"] == 105
    assert lead["mql"] is True
    assert lead["lead"]["stage"] == "mql"
    assert lead["lead"]["account_id"] == "acme-bank"
    points = {c["rule"]: c["points"] for c in lead["contributions"]}
    assert points["pricing page twice in a week"] == 30  # one visit was made anonymously
    assert [t["to_stage"] for t in lead["transitions"]] == ["mql"]
    assert len(lead["recent_events"]) == 7
    assert by_alias.status_code == 200  # the anonymous id still finds the merged lead
    assert by_alias.json()["lead"]["id"] == user


def test_success_is_exactly_200_and_the_key_may_come_in_three_places(service: Service) -> None:
    message = {"type": "track", "event": "Webinar Attended", "timestamp": day(1).isoformat()}
    key = service.keys["write"]
    cases = [
        {"auth": (key, "")},
        {"headers": {"Authorization": f"Bearer {key}"}},
        {"extra": {"writeKey": key}},
    ]
    for case in cases:
        body = {"batch": [{**message, "userId": unique("u"), "messageId": unique("m")}]}
        body.update(case.get("extra", {}))
        response = httpx.post(
            f"{service.base}/v1/batch",
            content=orjson.dumps(body),
            auth=case.get("auth"),
            headers=case.get("headers"),
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    with service.client("read") as api:  # the key that came in the body was not stored
        stored = api.get(f"/api/leads/{body['batch'][0]['userId']}").json()["recent_events"]
    assert "writeKey" not in stored[0]["payload"]
    assert stored[0]["payload"]["messageId"] == body["batch"][0]["messageId"]
    single = {**message, "userId": unique("u"), "messageId": unique("m")}
    single.pop("type")
    response = httpx.post(f"{service.base}/v1/track", json=single, auth=(key, ""))
    assert (response.status_code, response.json()) == (200, {"success": True})


def test_a_web_page_sends_as_segments_browser_library_does(service: Service) -> None:
    """analytics.js posts to the short paths (`/v1/t`, `/v1/b`, ...) as `text/plain`, with
    the write key in the body, from the website's origin; the answer must carry CORS
    headers or the page sees a network error and retries. RudderStack's browser SDK sends
    JSON with a Basic header, which takes a preflight. The lead API stays closed to pages."""
    user, site = unique("web"), "https://www.example.com"
    key = service.keys["write"]

    def message(kind: str, n: int, **fields: object) -> dict:
        return {"type": kind, "userId": user, "messageId": f"{user}-{n}",
                "timestamp": day(n).isoformat(), **fields}  # fmt: skip

    plain = {"Content-Type": "text/plain", "Origin": site}
    with httpx.Client(base_url=service.base, timeout=30) as http:
        sent = [
            http.post(path, headers=plain, content=orjson.dumps({"writeKey": key, **body}))
            for path, body in (
                ("/v1/i", message("identify", 0, traits={"industry": "Financial Services"})),
                ("/v1/t", message("track", 1, event="Webinar Attended")),
                (
                    "/v1/b",
                    {
                        "batch": [
                            message("page", 2, name="Pricing"),
                            message("page", 3, name="Pricing"),
                        ]
                    },
                ),
            )
        ]
        assert [r.status_code for r in sent] == [200, 200, 200], [r.text for r in sent]
        assert {r.headers["access-control-allow-origin"] for r in sent} == {site}
        preflight = http.options(
            "/v1/batch",
            headers={
                "Origin": site,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,anonymousid",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == site
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        refused = http.post("/v1/t", headers=plain, content=b'{"writeKey": "nope"}')
        assert refused.status_code == 401  # a page reads why, too
        assert refused.headers["access-control-allow-origin"] == site
        closed = http.options(
            "/api/leads",
            headers={"Origin": site, "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in closed.headers
    with service.client("read") as api:
        lead = api.get(f"/api/leads/{user}", headers={"Origin": site})
    assert "access-control-allow-origin" not in lead.headers
    body = lead.raise_for_status().json()
    assert len(body["recent_events"]) == 4
    assert all("writeKey" not in e["payload"] for e in body["recent_events"])


def test_a_bad_message_is_reported_by_index_and_the_rest_is_kept(service: Service) -> None:
    user = unique("u")
    batch = [
        {
            "type": "identify",
            "userId": user,
            "messageId": unique("m"),
            "traits": {"industry": "Financial Services"},
        },
        {"type": "track", "userId": user, "messageId": unique("m")},  # no event name
        {"type": "track", "event": "Webinar Attended", "messageId": unique("m")},  # no ids
        {
            "type": "track",
            "event": "Webinar Attended",
            "userId": user,
            "messageId": unique("m"),
            "timestamp": day(1).isoformat(),
        },
        {
            "type": "track",
            "event": "x",
            "userId": user,
            "messageId": unique("m"),
            "properties": {"blob": "x" * 40_000},
        },
    ]
    batch += [  # what the store could not keep: rejected up front, on every backend
        {"type": "track", "event": "e", "userId": "u" * 201, "messageId": unique("m")},
        {"type": "track", "event": "e" * 201, "userId": user, "messageId": unique("m")},
        {"type": "track", "event": "e", "userId": user, "properties": {"x": "a\u0000b"}},
        {"type": "track", "event": "e", "userId": "anon:someone", "messageId": unique("m")},
    ]
    response = httpx.post(
        f"{service.base}/v1/batch", json={"batch": batch}, auth=(service.keys["write"], "")
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_messages"
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 4, 5, 6, 7, 8]
    assert "at most 200" in body["rejected"][3]["reason"]
    assert "NUL" in body["rejected"][5]["reason"]
    assert "anon:" in body["rejected"][6]["reason"]
    reasons = [r["reason"] for r in body["rejected"]]
    assert "event" in reasons[0]
    assert "neither `userId` nor `anonymousId`" in reasons[1]
    assert "bytes; at most 32,768" in reasons[2]
    with service.client("read") as api:
        lead = api.get(f"/api/leads/{user}").raise_for_status().json()
    assert lead["score"] == 35  # industry 15 + webinar 20: the good messages were stored


def test_malformed_bodies_get_a_reason(service: Service) -> None:
    key = (service.keys["write"], "")
    url = f"{service.base}/v1/batch"
    cases = [
        (httpx.post(url, content=b"{not json", auth=key), 400, "invalid_json"),
        (httpx.post(url, json={"messages": []}, auth=key), 400, "invalid_batch"),
        (
            httpx.post(
                url,
                content=b"not gzip",
                headers={"Content-Encoding": "gzip"},
                auth=key,
            ),
            400,
            "invalid_gzip",
        ),
        (httpx.post(url, content=b" " * (4 * 1024 * 1024 + 1), auth=key), 413, "body_too_large"),
        (
            httpx.post(
                url,
                content=gzip.compress(b" " * (4 * 1024 * 1024 + 10)),  # small, but not inflated
                headers={"Content-Encoding": "gzip"},
                auth=key,
            ),
            413,
            "body_too_large",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
        assert response.json()["message"]


def test_the_same_message_id_counts_once(service: Service) -> None:
    user, message_id = unique("u"), unique("m")
    message = {
        "type": "track",
        "event": "Webinar Attended",
        "userId": user,
        "messageId": message_id,
        "timestamp": day(1).isoformat(),
    }
    for _ in range(3):  # an SDK retrying
        response = httpx.post(
            f"{service.base}/v1/batch",
            json={"batch": [message, message]},
            auth=(service.keys["write"], ""),
        )
        assert response.status_code == 200
    with service.client("read") as api:
        lead = api.get(f"/api/leads/{user}").raise_for_status().json()
    assert lead["score"] == 20
    assert len(lead["recent_events"]) == 1


def test_keys_and_roles(service: Service) -> None:
    url = service.base
    assert httpx.get(f"{url}/api/leads").status_code == 401
    assert (
        httpx.get(f"{url}/api/leads", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    with service.client("write") as writer:
        refused = writer.get("/api/leads")
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    for role in ("sales", "read", "marketing"):
        response = httpx.post(
            f"{url}/v1/batch",
            json={"batch": []},
            headers={"Authorization": f"Bearer {service.keys[role]}"},
        )
        assert response.status_code == 403, role
    assert httpx.post(f"{url}/v1/batch", json={"batch": []}).status_code == 401
    with service.client("marketing") as marketing:
        assert marketing.get("/api/leads").status_code == 200
        refused = marketing.post("/api/leads/whoever/accept")
        assert refused.status_code == 403


def test_sales_feedback_follows_the_lifecycle(service: Service) -> None:
    user = unique("u")
    messages = [
        {
            "type": "identify",
            "userId": user,
            "traits": {"industry": "Financial Services", "company_size": 500},
        },
        {
            "type": "track",
            "event": "Content Downloaded",
            "properties": {"content_type": "whitepaper", "topic": "compliance"},
        },
        {"type": "track", "event": "Webinar Attended"},
        {"type": "page", "properties": {"path": "/pricing"}},
        {"type": "page", "properties": {"path": "/pricing"}},
    ]
    batch = [
        {"userId": user, "messageId": unique("m"), "timestamp": day(i).isoformat(), **m}
        for i, m in enumerate(messages)
    ]
    httpx.post(
        f"{service.base}/v1/batch", json={"batch": batch}, auth=(service.keys["write"], "")
    ).raise_for_status()
    with service.client("sales") as sales:
        early = sales.post(f"/api/leads/{user}/won", json={"amount": 1000})
        assert early.status_code == 409
        problem = early.json()
        assert problem["code"] == "transition_not_allowed"
        assert problem["stage"] == "mql"
        assert set(problem["allowed_actions"]) >= {"accept", "reject"}
        missing = sales.post(f"/api/leads/{user}/reject", json={})
        assert (missing.status_code, missing.json()["code"]) == (400, "invalid_request")
        assert "`reason`: Field required" in missing.json()["message"]
        blank = sales.post(f"/api/leads/{user}/reject", json={"reason": "  "})
        assert (blank.status_code, blank.json()["code"]) == (400, "invalid_request")
        assert blank.json()["message"] == "`reason`: say why: the reason must not be blank"
        misspelt = sales.post(f"/api/leads/{user}/accept", json={"budgett": "approved"})
        assert (misspelt.status_code, misspelt.json()["code"]) == (400, "invalid_request")
        assert "unknown field `budgett`: did you mean `budget`?" in misspelt.json()["message"]
        stray = sales.post(f"/api/leads/{user}/won", json={"value": 5}).json()["message"]
        assert "unknown field `value` (known: `actor`, `reason`, `amount`)" in stray
        no_body = sales.post(f"/api/leads/{user}/reject")
        assert no_body.json()["message"].startswith("the JSON body")
        json_type = {"Content-Type": "application/json"}
        not_json = sales.post(f"/api/leads/{user}/reject", content=b"{oops", headers=json_type)
        assert (not_json.status_code, not_json.json()["code"]) == (400, "invalid_json")
        form = sales.post(f"/api/leads/{user}/reject", content=b"reason=x")
        assert "must be a JSON object" in form.json()["message"]
        accepted = (
            sales.post(f"/api/leads/{user}/accept", json={"budget": "approved", "timeline": "Q3"})
            .raise_for_status()
            .json()
        )
        assert (accepted["from_stage"], accepted["to_stage"]) == ("mql", "sql")
        assert accepted["details"] == {"budget": "approved", "timeline": "Q3"}
        assert accepted["actor"] == "sales:test sales"
        sales.post(f"/api/leads/{user}/opportunity").raise_for_status()
        negative = sales.post(f"/api/leads/{user}/won", json={"amount": -5})
        assert (negative.status_code, negative.json()["code"]) == (400, "invalid_request")
        won = sales.post(f"/api/leads/{user}/won", json={"amount": 25000}).raise_for_status().json()
        assert won["to_stage"] == "customer"
        missing_lead = sales.post("/api/leads/nobody-here/accept")
        assert (missing_lead.status_code, missing_lead.json()["code"]) == (404, "lead_not_found")
        history = sales.get(f"/api/leads/{user}").json()["transitions"]
    assert [t["to_stage"] for t in history] == ["mql", "sql", "opportunity", "customer"]


def test_a_lead_whose_id_holds_a_slash_is_reached_by_every_route(service: Service) -> None:
    """A userId is any text: `acme/123 é` percent-encoded in the path (its `/` as %2F, which
    arrives decoded) finds the lead for reads, explanations, feedback and routing alike."""
    user = unique("acme") + "/123 é"
    quoted = quote(user, safe="")
    body = {"type": "track", "event": "Webinar Attended", "userId": user,
            "messageId": unique("m"), "timestamp": day(1).isoformat()}  # fmt: skip
    httpx.post(
        f"{service.base}/v1/track", json=body, auth=(service.keys["write"], "")
    ).raise_for_status()
    with service.client("read") as api, service.client("sales") as sales:
        assert api.get(f"/api/leads/{quoted}").raise_for_status().json()["lead"]["id"] == user
        explained = api.get(f"/api/leads/{quoted}/explain").raise_for_status().json()
        assert [c["rule"] for c in explained["contributions"]] == ["webinar attended"]
        refused = sales.post(f"/api/leads/{quoted}/accept")  # a lead, not yet an MQL
        assert (refused.status_code, refused.json()["code"]) == (409, "transition_not_allowed")
        nobody = api.get(f"/api/leads/{quote('no/such lead', safe='')}")
        assert (nobody.status_code, nobody.json()["code"]) == (404, "lead_not_found")
        assert nobody.json()["message"].endswith("see GET /api/leads")  # not a CLI command


def test_lead_lists_filter_sort_and_page(service: Service) -> None:
    source = unique("src")
    batch = [
        {
            "type": "track",
            "event": "Webinar Attended",
            "userId": f"{source}-{i}",
            "messageId": unique("m"),
            "timestamp": day(i).isoformat(),
            "properties": {"utm_source": source},
        }
        for i in range(7)
    ]
    batch += [  # a second webinar for three of them: 40 points instead of 20
        {**batch[i], "messageId": unique("m"), "timestamp": day(10).isoformat()} for i in (1, 3, 5)
    ]
    httpx.post(
        f"{service.base}/v1/batch", json={"batch": batch}, auth=(service.keys["write"], "")
    ).raise_for_status()
    with service.client("read") as api:
        seen, cursor, pages = [], None, 0
        while True:
            params = {"source": source, "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = api.get("/api/leads", params=params).raise_for_status().json()
            seen += [(lead["score"], lead["id"]) for lead in page["leads"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert len(seen) == len(set(seen)) == 7
        assert seen == sorted(seen, key=lambda s: (-s[0], s[1]))
        assert [s for s, _ in seen[:3]] == [40, 40, 40]
        rich = api.get("/api/leads", params={"source": source, "min_score": 30}).json()["leads"]
        assert len(rich) == 3
        ascending = api.get("/api/leads", params={"source": source, "sort": "score"}).json()
        assert ascending["leads"][0]["score"] == 20
        bad = api.get("/api/leads", params={"sort": "nope"})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_sort")
        first = api.get("/api/leads", params={"source": source, "limit": 2}).json()
        other_sort = api.get("/api/leads", params={"sort": "id", "cursor": first["next_cursor"]})
        assert (other_sort.status_code, other_sort.json()["code"]) == (400, "invalid_cursor")
        for params in ({"stage": "bogus"}, {"tier": "HOT"}, {"grade": "Z"}):
            typo = api.get("/api/leads", params=params)
            assert (typo.status_code, typo.json()["code"]) == (400, "invalid_filter"), params
            assert "unknown" in typo.json()["message"]


def test_health_metrics_and_openapi(service: Service) -> None:
    assert httpx.get(f"{service.base}/healthz").json()["status"] == "ok"
    httpx.post(
        f"{service.base}/v1/batch",
        json={
            "batch": [
                {
                    "type": "track",
                    "event": "Webinar Attended",
                    "userId": unique("u"),
                    "messageId": unique("m"),
                }
            ]
        },
        auth=(service.keys["write"], ""),
    ).raise_for_status()
    assert httpx.get(f"{service.base}/no-such-route").status_code == 404
    metrics = httpx.get(f"{service.base}/metrics").text
    assert "qualify_events_ingested_total" in metrics
    # every request is timed by its route, method and status, the unmatched ones too
    for labels in (
        'method="POST",route="/v1/batch",status="200"',
        'method="GET",route="unmatched",status="404"',
        'method="GET",route="/healthz",status="200"',
    ):
        assert f"qualify_request_seconds_count{{{labels}}}" in metrics, labels
    spec = httpx.get(f"{service.base}/openapi.json").json()
    assert "/v1/batch" in spec["paths"] and "/api/leads/{lead_id}/accept" in spec["paths"]
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "basic"}
    batch = spec["paths"]["/v1/batch"]["post"]
    assert "batch" in batch["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "422" not in batch["responses"]  # validation errors are 400, and documented so
    assert "400" in spec["paths"]["/api/leads"]["get"]["responses"]
    assert "422" in spec["paths"]["/api/models"]["post"]["responses"]  # an invalid model
    # every answer a route gives is in its schema, each with the one error shape
    assert {"413", "415", "429", "503"} <= set(batch["responses"])
    assert "Retry-After" in batch["responses"]["429"]["headers"]
    accept = spec["paths"]["/api/leads/{lead_id}/accept"]["post"]["responses"]
    assert {"404", "409"} <= set(accept)
    assert "409" not in spec["paths"]["/api/leads/{lead_id}"]["get"]["responses"]
    assert "404" in spec["paths"]["/api/jobs/{job_id}"]["get"]["responses"]
    assert httpx.get(f"{service.base}/docs").status_code == 200


@pytest.mark.slow
def test_over_the_rate_limit_the_answer_is_429_with_retry_after(tmp_path) -> None:
    running = start_service(f"sqlite:///{tmp_path / 'limited.db'}", "--rate-limit", "5")
    try:

        def send() -> httpx.Response:
            batch = [
                {
                    "type": "track",
                    "event": "Webinar Attended",
                    "userId": "u",
                    "messageId": unique("m"),
                }
                for _ in range(20)
            ]
            return httpx.post(
                f"{running.base}/v1/batch", json={"batch": batch}, auth=(running.keys["write"], "")
            )

        assert send().status_code == 200  # a first burst passes
        limited = send()
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        stop_service(running)


def test_a_server_failure_is_answered_in_one_line_and_logged_whole(tmp_path) -> None:
    """The caller of a 5xx gets the JSON error; the operator gets the request and the
    traceback in the server's log, where it can be diagnosed."""
    running = start_service(f"sqlite:///{tmp_path / 'broken.db'}")
    try:
        with running.client("read") as api:
            assert api.get("/api/leads").status_code == 200
            breaker = create_engine(running.db)
            with breaker.begin() as conn:  # the store loses a table under the running server
                conn.execute(text("DROP TABLE leads"))
            breaker.dispose()
            failed = api.get("/api/leads")
        assert failed.status_code == 503
        assert failed.json()["code"] == "store_unavailable"
        assert "no such table: leads" in failed.json()["message"]
        assert "Traceback" not in failed.text
        log = running.output()
        assert "ERROR:    GET /api/leads answered 503 store_unavailable" in log
        assert "Traceback (most recent call last)" in log
        assert "sqlite3.OperationalError: no such table: leads" in log
    finally:
        stop_service(running)
