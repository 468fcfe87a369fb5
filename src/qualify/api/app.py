"""The application: store, key cache, group committer and routes, wired once per process."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qualify import __version__
from qualify.api import leads, models, openapi, problems, routing, segment, webhooks
from qualify.api.auth import KeyCache
from qualify.api.committer import Committer
from qualify.api.metrics import Metrics
from qualify.api.responses import JsonResponse
from qualify.api.settings import ServiceSettings
from qualify.service.ingest import Ingestor, IngestReport
from qualify.service.scheduler import Scheduler
from qualify.service.webhooks import DeliveryPolicy, DeliveryWorker
from qualify.store import open_engine
from qualify.store.database import Checkpointer, ingest_engine

__all__ = ["app_from_env", "create_app", "settle_collector"]


def settle_collector() -> None:
    """The garbage collector as a long-running writer wants it: what was loaded to start is
    permanent (frozen); and the leads the writer keeps in memory are many small long-lived
    objects the cyclic collector would rescan again and again, pausing every request (our
    code makes no cycles on its hot paths), so it runs far less often."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class _LazyCommitter:
    """Ingestion needs an active model; start the writer when the first message comes, so
    the service can start (and answer health checks) before a model is activated."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.committer: Committer | None = None
        # the first requests arrive together: one of them starts the writer, the others
        # wait for it (two writers would each hold their own leads and take turns)
        self.starting = asyncio.Lock()

    async def submit(self, messages: list) -> IngestReport:
        if self.committer is None:
            async with self.starting:
                if self.committer is None:
                    self.committer = await self._start()
        return await self.committer.submit(messages)

    async def _start(self) -> Committer:
        state = self.app.state
        # reads the store (raises NoActiveModel → 503): not on the event loop
        ingestor = await run_in_threadpool(Ingestor, state.ingest_engine)
        return Committer(
            ingestor,
            state.settings.group_limit,
            on_commit=lambda r: state.metrics.ingested(r.ingested, r.duplicates, r.new_mqls),
            sync=state.ingest_sync,
            between=state.writer_upkeep,
        )

    def close(self) -> None:
        if self.committer is not None:
            self.committer.close()


class RequestTiming:
    """Each request's latency, by route, method and status, into the metrics' histogram.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette runs that kind
    in a task group with memory streams between it and the app, which cost more per
    request than a single-message `/v1/track` itself: measured at 200 calls/s, p50 9–13 ms
    → 5 ms and p99 35–85 ms → 18 ms (docs/benchmarks.md). The time counts until the whole
    answer is sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before it starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router, in this same scope
            scope["app"].state.metrics.request_seconds.labels(
                getattr(route, "path", "unmatched"), scope["method"], str(status)
            ).observe(time.perf_counter() - started)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = open_engine(settings.database_url)
        writer, app.state.ingest_sync = ingest_engine(engine, settings.database_url)
        sqlite = engine.dialect.name == "sqlite"
        checkpoints = Checkpointer(engine, also=(writer,)) if sqlite else None
        app.state.settings = settings
        app.state.engine = engine
        app.state.ingest_engine = writer
        app.state.writer_upkeep = (
            functools.partial(checkpoints.restart_if_due, writer) if checkpoints else None
        )
        app.state.keys = KeyCache(engine)
        app.state.limiter = segment.RateLimiter(settings.rate_limit)
        app.state.metrics = Metrics()
        app.state.committer = _LazyCommitter(app)
        scheduler = deliveries = None
        if settings.schedule_every > 0:  # SLA breaches, waiting MQLs, webhooks: every worker
            policy = DeliveryPolicy(
                base_delay=settings.webhook_base_delay,
                max_attempts=settings.webhook_max_attempts,
            )
            deliveries = DeliveryWorker(engine, policy=policy)
            await run_in_threadpool(deliveries.ensure)  # only once a webhook exists
            scheduler = Scheduler(
                engine,
                settings.schedule_every,
                after_round=deliveries.ensure,
                on_report=lambda report: app.state.metrics.qualified(report.requalified),
            )
            scheduler.start()
        app.state.deliveries = deliveries
        settle_collector()
        try:
            yield
        finally:
            app.state.committer.close()
            if scheduler is not None:
                scheduler.stop()
            if deliveries is not None:
                deliveries.stop()
            if checkpoints is not None:
                checkpoints.stop()
            writer.dispose()
            engine.dispose()

    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts from this server, not
    # from a CDN (a self-hosted service may have no internet access; /docs was blank there)
    app = FastAPIOffline(
        title="Qualify",
        version=__version__,
        summary="Lead qualification: Segment-compatible ingestion, scores, lifecycle",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    problems.install(app)
    openapi.install(app)
    app.include_router(segment.router)
    app.include_router(leads.router)
    app.include_router(models.router)
    app.include_router(routing.router)
    app.include_router(webhooks.router)

    app.add_middleware(segment.BrowserAccess)
    app.add_middleware(RequestTiming)

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness and the store's reachability",
        openapi_extra=openapi.OPEN,
    )
    def healthz(request: Request) -> JsonResponse:
        try:
            with request.app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            body = {"code": "store_unavailable", "message": f"the store does not answer: {exc}"}
            return JsonResponse(body, status_code=503)
        return JsonResponse({"status": "ok", "version": __version__})

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics of this worker",
        openapi_extra=openapi.OPEN,
    )
    def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def app_from_env() -> FastAPI:
    """What `qualify serve` (and each of its worker processes) runs."""
    return create_app(ServiceSettings.from_env())
