"""The Segment HTTP Tracking API: `/v1/batch`, `/v1/identify`, `/v1/track`, `/v1/page`,
`/v1/screen`, `/v1/group`, `/v1/alias`, and the short paths Segment's browser library
(analytics.js) posts to: `/v1/b` (its batches), `/v1/t`, `/v1/i`, `/v1/p`, `/v1/s`, `/v1/g`,
`/v1/a`. A browser sends those as `text/plain` with the write key in the body, from the
website's origin: the body is JSON whatever its declared type, and `BrowserAccess` lets any
origin call `/v1/` (the write key, not the origin, admits a message; it reads nothing).

Any Segment or RudderStack SDK sends here after one host setting changes. What SDKs rely on:
success is exactly 200 (other 2xx count as failures and are retried); 4xx other than 429 are
not retried, so a rejected message is reported, not resent; 429 and 5xx are retried, with
`Retry-After` honoured. Good messages of a batch are kept when others are rejected, and the
answer names each rejected one by its index. The answer goes out after the commit.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from qualify.api.auth import secret_from_headers
from qualify.api.openapi import BATCH, MESSAGE, json_body
from qualify.api.problems import ApiProblem
from qualify.api.responses import JsonResponse
from qualify.core.activity import (
    MESSAGE_TYPES,
    ActivityEvent,
    decode_message,
    format_time,
    refuse_nul,
)
from qualify.errors import MessageError

__all__ = ["BrowserAccess", "RateLimiter", "router"]

router = APIRouter(tags=["ingestion (Segment HTTP API)"])


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: `rate` messages a second, bursts up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: dict[int, _Bucket] = {}

    def wait(self, key_id: int, count: int, now: float) -> float:
        """0 when `count` messages may pass now (they are counted), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        capacity = max(self.rate, count)
        bucket = self.buckets.setdefault(key_id, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= count:
            bucket.tokens -= count
            return 0.0
        return (count - bucket.tokens) / self.rate


async def _body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when it says so, refused beyond `limit` bytes (413)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise ApiProblem(400, "invalid_gzip", "the body is not valid gzip") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
    elif encoding not in ("", "identity"):
        raise ApiProblem(415, "unsupported_encoding", f"Content-Encoding `{encoding}`: use gzip")
    return body


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(
        413, "body_too_large", f"the request body is over {limit:,} bytes: send smaller batches"
    )


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiProblem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiProblem(400, "invalid_json", "the body must be a JSON object")
    return data


def _message(
    raw: Any, context: dict[str, Any] | None, kind: str | None, limit: int, now: float
) -> ActivityEvent:
    """One message: batch context merged in (the message's own keys win), size checked."""
    if not isinstance(raw, dict):
        raise MessageError(f"a message must be a JSON object, not {type(raw).__name__}")
    if context:
        own = raw.get("context")
        raw = {**raw, "context": {**context, **own} if isinstance(own, dict) else context}
    if kind is not None:
        raw = {**raw, "type": raw.get("type") or kind}
        if raw["type"] != kind:
            raise MessageError(f"a message of type `{raw['type']}` sent to /v1/{kind}")
    if "writeKey" in raw:  # a secret: never stored with the message
        raw = {k: v for k, v in raw.items() if k != "writeKey"}
    text = orjson.dumps(raw)
    if len(text) > limit:
        raise MessageError(f"the message is {len(text):,} bytes; at most {limit:,} are accepted")
    refuse_nul(text)
    event = decode_message(raw, received_at=now)
    if raw.get("messageId") != event.message_id or "timestamp" not in raw:
        # stored as it will be read back: with the id derived for it and its time, so a
        # replay (model activation) finds the same message at the same moment
        raw = {**raw, "messageId": event.message_id, "timestamp": format_time(event.timestamp)}
        text = orjson.dumps(raw)
    event.raw = text
    return event


async def _ingest(request: Request, kind: str | None) -> JsonResponse:
    state = request.app.state
    settings = state.settings
    body = await _body(request, settings.max_body_bytes)
    data = _decode(body)
    secret = secret_from_headers(request) or data.get("writeKey")
    key = state.keys.authorize(secret if isinstance(secret, str) else None, "ingest")
    if kind is None:
        items = data.get("batch")
        if not isinstance(items, list):
            raise ApiProblem(400, "invalid_batch", "the body needs `batch`: a list of messages")
        context = data.get("context")
        if context is not None and not isinstance(context, dict):
            raise ApiProblem(400, "invalid_batch", "the batch's `context` must be a JSON object")
    else:
        items, context = [data], None
    now = time.time()
    good: list[ActivityEvent] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            good.append(_message(item, context, kind, settings.max_message_bytes, now))
        except MessageError as exc:
            rejected.append({"index": index, "reason": exc.reason})
    wait = state.limiter.wait(key.id, len(good), time.monotonic())
    if wait > 0:
        raise ApiProblem(
            429,
            "rate_limited",
            f"over {settings.rate_limit:g} messages a second for this write key",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if good:
        started = time.perf_counter()
        await state.committer.submit(good)
        state.metrics.ingest_latency(time.perf_counter() - started)
    state.metrics.rejected(len(rejected))
    if rejected:
        raise ApiProblem(
            400,
            "invalid_messages",
            f"{_count(len(rejected), 'message')} of {len(items)} rejected; "
            f"{_count(len(good), 'other message')} stored",
            rejected=rejected,
            accepted=len(good),
        )
    return JsonResponse({"success": True})


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@router.post(
    "/v1/batch", summary="Send a batch of Segment messages", openapi_extra=json_body(BATCH)
)
async def batch(request: Request) -> JsonResponse:
    return await _ingest(request, None)


router.add_api_route("/v1/b", batch, methods=["POST"], include_in_schema=False)


def _single(kind: str) -> None:
    async def endpoint(request: Request) -> JsonResponse:
        return await _ingest(request, kind)

    endpoint.__name__ = kind
    router.add_api_route(
        f"/v1/{kind}",
        endpoint,
        methods=["POST"],
        summary=f"Send one `{kind}` message",
        openapi_extra=json_body(MESSAGE),
    )
    # analytics.js: the type's first letter (no two types share one)
    router.add_api_route(f"/v1/{kind[0]}", endpoint, methods=["POST"], include_in_schema=False)


for _kind in MESSAGE_TYPES:
    _single(_kind)


class BrowserAccess:
    """CORS for the ingestion paths only: a website's page may send to `/v1/` from its own
    origin (with a preflight when its SDK sets headers, as RudderStack's does), and read the
    answer, so that its SDK sees success or a reason instead of a network error it would
    retry for ever. The lead and model API stays closed to pages of other origins."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origin_regex=".*",  # the origin that asks, echoed; credentials allowed
            allow_credentials=True,
            allow_methods=["POST"],
            allow_headers=["*"],
            max_age=86400,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
