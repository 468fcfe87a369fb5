"""The model API: upload a model (validated, with line and column for every problem), list
the versions, activate one — rescoring every lead as a background job with progress."""

from __future__ import annotations

import dataclasses
import threading
import time
from importlib.util import find_spec
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from qualify.api.leads import require
from qualify.api.metrics import Metrics
from qualify.api.openapi import ERROR_BODY
from qualify.api.problems import ApiProblem
from qualify.api.responses import JsonResponse
from qualify.model import load_model
from qualify.service.queries import iso_times
from qualify.service.rescore import BulkEngine, activate_version
from qualify.store.database import writing
from qualify.store.jobs import create_job, finish_job, get_job, job_phase, job_progress
from qualify.store.keys import ApiKey
from qualify.store.versions import list_versions, save_version

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["models"])
Modeler = Annotated[ApiKey, Depends(require("models"))]
Reader = Annotated[ApiKey, Depends(require("read"))]
MAX_MODEL_BYTES = 1024 * 1024


@router.post(
    "/models",
    status_code=201,
    summary="Upload a model (YAML); it is not active yet",
    responses={
        422: {
            "description": "an invalid model: every problem's line, column, message",
            **ERROR_BODY,
        }
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        },
        "parameters": [
            {
                "name": "filename",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "default": "model.yaml"},
            }
        ],
    },
)
async def upload(request: Request, key: Modeler) -> JsonResponse:
    body = await request.body()
    if len(body) > MAX_MODEL_BYTES:
        raise ApiProblem(413, "body_too_large", "a model file is at most 1 MB")
    text = body.decode("utf-8", errors="replace")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            text = orjson.loads(body)["source"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            text = None
        if not isinstance(text, str):
            raise ApiProblem(
                400, "invalid_request", 'send the YAML itself, or JSON {"source": "<the YAML>"}'
            )
    name = request.query_params.get("filename", "model.yaml")
    model = load_model(text, name)  # ModelError → 422 with every problem's line and column
    engine: Engine = request.app.state.engine

    def store() -> int:
        with writing(engine) as conn:  # may wait for the write lock: not on the event loop
            return save_version(conn, model, f"{key.role}:{key.name}", time.time())

    version_id = await run_in_threadpool(store)
    body_out = {"id": version_id, "name": model.name, "version": model.version}
    return JsonResponse({**body_out, "checksum": model.checksum}, status_code=201)


@router.get("/models", summary="Model versions: which is active, who stored it and when")
def versions(request: Request, _: Reader) -> dict[str, Any]:
    with request.app.state.engine.connect() as conn:
        found = list_versions(conn)
    return {"models": [iso_times(dataclasses.asdict(v)) for v in found]}


@router.post(
    "/models/{version_id}/activate",
    status_code=202,
    summary="Activate a version; every lead is rescored in the background (see the job)",
)
def activate(
    request: Request,
    version_id: int,
    key: Modeler,
    rescore_with: Annotated[
        Literal["live", "duckdb", "postgres"],
        Query(
            alias="engine",
            description="What rescores the leads: the live engine, or a batch engine that "
            "scores the store in bulk and writes the scores back (faster on a large store): "
            "duckdb, or postgres (a PostgreSQL store, in place).",
        ),
    ] = "live",
) -> JsonResponse:
    engine: Engine = request.app.state.engine
    if rescore_with == "postgres" and engine.dialect.name != "postgresql":
        raise ApiProblem(
            400,
            "engine_unavailable",
            f"engine=postgres rescores a PostgreSQL store in place; this store is "
            f"{engine.dialect.name}: use engine=duckdb",
        )
    if rescore_with != "live" and find_spec("ibis") is None:  # pragma: no cover - test extras
        raise ApiProblem(
            400, "engine_unavailable", "batch engines need the `batch` extra: qualify[batch]"
        )
    with engine.connect() as conn:
        if not any(v.id == version_id for v in list_versions(conn)):
            raise ApiProblem(404, "model_not_found", f"no model version #{version_id}")
    with writing(engine) as conn:
        job_id = create_job(conn, "activate", f"{key.role}:{key.name}", time.time())
    bulk = None if rescore_with == "live" else BulkEngine(rescore_with)
    metrics: Metrics = request.app.state.metrics
    threading.Thread(
        target=_run_activation, args=(engine, job_id, version_id, bulk, metrics), daemon=True
    ).start()
    body = {"job": job_id, "status": "running", "url": f"/api/jobs/{job_id}"}
    return JsonResponse(body, status_code=202)


def _run_activation(
    engine: Engine, job_id: int, version_id: int, bulk: BulkEngine | None, metrics: Metrics
) -> None:
    counts = {"done": 0, "total": 0}

    def phase(text: str) -> None:
        with engine.begin() as conn:
            job_phase(conn, job_id, text)

    def total(n: int) -> None:
        counts["total"] = n
        with engine.begin() as conn:
            job_progress(conn, job_id, 0, n)

    def step(n: int) -> None:
        counts["done"] += n
        with engine.begin() as conn:
            job_progress(conn, job_id, counts["done"], counts["total"])

    try:
        report = activate_version(
            engine, version_id, on_total=total, progress=step, bulk=bulk, on_phase=phase
        )
    except Exception as exc:
        with engine.begin() as conn:
            finish_job(conn, job_id, time.time(), error=f"{type(exc).__name__}: {exc}")
        return
    result = {
        "version_id": report.version_id,
        "leads": report.leads,
        "changed": report.changed,
        "new_mqls": report.new_mqls,
    }
    metrics.qualified(report.new_mqls)
    with engine.begin() as conn:
        finish_job(conn, job_id, time.time(), result=result)


@router.get("/jobs/{job_id}", tags=["operations"], summary="A background job's progress")
def job(request: Request, job_id: int, _: Reader) -> dict[str, Any]:
    with request.app.state.engine.connect() as conn:
        found = get_job(conn, job_id)
    if found is None:
        raise ApiProblem(404, "job_not_found", f"no job #{job_id}")
    return iso_times(found)
