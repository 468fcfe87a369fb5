"""The model API over a real server: upload with line-and-column errors, list, activate as a
background job whose progress any worker can report, and the rescored leads."""

from __future__ import annotations

import time

import httpx

from serving import FIXTURES, Service


def wait_for(api: httpx.Client, url: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.get(url).raise_for_status().json()
        if job["status"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError(f"the job at {url} did not finish")


def _mqls_counted(api: httpx.Client) -> float:
    """The server's `qualify_mqls_total` (one worker: the tests' servers run one)."""
    for line in api.get("/metrics").raise_for_status().text.splitlines():
        if line.startswith("qualify_mqls_total "):
            return float(line.split()[1])
    raise AssertionError("no qualify_mqls_total in /metrics")


def test_upload_list_and_activate_a_model(service: Service) -> None:
    batch = [  # one without a messageId: the store derives one, and keeps it
        {"type": "track", "event": "Webinar Attended", "userId": "m-lead", "messageId": "w0"},
        {"type": "track", "event": "Webinar Attended", "userId": "m-lead"},
    ]
    httpx.post(
        f"{service.base}/v1/batch", json={"batch": batch}, auth=(service.keys["write"], "")
    ).raise_for_status()
    worked = (FIXTURES / "worked_example.yaml").read_text()
    with service.client("marketing") as marketing, service.client("sales") as sales:
        broken = worked.replace("starts_with", "start_with").replace("version: 1", "version: 2")
        refused = marketing.post("/api/models", content=broken)
        assert refused.status_code == 422
        problem = refused.json()
        assert problem["code"] == "invalid_model"
        assert problem["problems"][0]["line"] == 21
        assert "did you mean `starts_with`" in problem["problems"][0]["message"]
        assert sales.post("/api/models", content=worked).status_code == 403
        for body in ({"source": 5}, {"yaml": worked}, [worked]):  # JSON, but no YAML text
            wrong = marketing.post("/api/models", json=body)
            assert wrong.status_code == 400, wrong.text
            assert wrong.json()["code"] == "invalid_request"

        richer = worked.replace("points: 20", "points: 50").replace("version: 1", "version: 2")
        created = marketing.post("/api/models", content=richer, params={"filename": "v2.yaml"})
        assert created.status_code == 201
        version_id = created.json()["id"]
        listed = marketing.get("/api/models").json()["models"]
        assert [(m["version"], m["active"]) for m in listed] == [("1", True), ("2", False)]
        assert listed[1]["created_by"] == "marketing:test marketing"

        assert marketing.post("/api/models/999/activate").status_code == 404
        mqls_before = _mqls_counted(marketing)
        started = marketing.post(f"/api/models/{version_id}/activate")
        assert started.status_code == 202
        job = wait_for(marketing, started.json()["url"])
        assert job["status"] == "done", job
        assert job["done"] == job["total"] == job["result"]["leads"] >= 1
        assert job["phase"] is None  # said while running ("rescoring every lead")
        assert job["result"]["new_mqls"] >= 1  # m-lead: its two webinars now make 100
        assert _mqls_counted(marketing) == mqls_before + job["result"]["new_mqls"]
        lead = marketing.get("/api/leads/m-lead").json()
        assert lead["score"] == 100  # two webinars at 50 points each under the new model
        assert lead["mql"] is True
        evidence = [e for c in lead["contributions"] for e in c["events"]]
        assert len(evidence) == 2
        assert all(e.get("name") == "Webinar Attended" for e in evidence), evidence
        assert isinstance(lead["lead"]["qualified_at"], str)  # ISO times, as in lists
        assert [m["active"] for m in marketing.get("/api/models").json()["models"]] == [
            False,
            True,
        ]
        assert marketing.get("/api/jobs/12345").status_code == 404

        # The same, rescored in bulk (DuckDB, or PostgreSQL in place) and written back: the
        # lead's points still come with their events (its state is rebuilt when explained).
        bulkier = worked.replace("points: 20", "points: 60").replace("version: 1", "version: 3")
        version_id = marketing.post("/api/models", content=bulkier).json()["id"]
        unknown = marketing.post(f"/api/models/{version_id}/activate?engine=spark")
        assert unknown.status_code in (400, 422) and "code" in unknown.json()
        bulk = "duckdb"
        if service.db.startswith("postgresql"):
            bulk = "postgres"  # the store's own events, in place
        else:
            refused = marketing.post(f"/api/models/{version_id}/activate?engine=postgres")
            assert refused.status_code == 400 and refused.json()["code"] == "engine_unavailable"
        started = marketing.post(f"/api/models/{version_id}/activate?engine={bulk}")
        job = wait_for(marketing, started.json()["url"])
        assert job["status"] == "done", job
        assert job["done"] == job["total"] == job["result"]["leads"] >= 1
        lead = marketing.get("/api/leads/m-lead").json()
        assert lead["score"] == 120 and lead["mql"] is True
        evidence = [e for c in lead["contributions"] for e in c["events"]]
        assert len(evidence) == 2
        assert all(e.get("name") == "Webinar Attended" for e in evidence), evidence
