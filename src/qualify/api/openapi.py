"""The OpenAPI document as the service really behaves: keys (Bearer or Basic) for the
Authorize button in `/docs`, and the one error shape (FastAPI's generated 422 validation
answers are 400 here). Routes that read their body themselves describe it with `json_body`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["BATCH", "ERROR_BODY", "MESSAGE", "OPEN", "install", "json_body"]

ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "example": "invalid_messages"},
        "message": {"type": "string"},
    },
    "additionalProperties": True,
}
MESSAGE = {
    "type": "object",
    "description": "A Segment message (identify, track, page, screen, group or alias)",
    "properties": {
        "type": {"type": "string"},
        "messageId": {"type": "string"},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "groupId": {"type": "string"},
        "previousId": {"type": "string"},
    },
}
ERROR_BODY = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
OPEN = {"security": []}  # a route's `openapi_extra` when it needs no key
BATCH = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": MESSAGE},
        "context": {"type": "object"},
        "writeKey": {"type": "string"},
    },
}


def install(app: FastAPI) -> None:
    def schema() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a key or token"},
            "basic": {"type": "http", "scheme": "basic", "description": "key as user name"},
        }
        doc["security"] = [{"bearer": []}, {"basic": []}]
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if "HTTPValidationError" in str(responses.get("422", "")):
                    del responses["422"]  # FastAPI's validation answer: 400 here
                if operation.get("security") == []:  # open routes (health, metrics)
                    continue
                for status, what in _errors(path, method):
                    responses.setdefault(status, {"description": what, **ERROR_BODY})
                if "429" in responses:
                    responses["429"]["headers"] = {
                        "Retry-After": {
                            "description": "seconds to wait before sending again",
                            "schema": {"type": "integer"},
                        }
                    }
        app.openapi_schema = doc
        return doc

    app.openapi = schema  # type: ignore[method-assign]


def _errors(path: str, method: str) -> list[tuple[str, str]]:
    """The error answers a route can give, by what it is (the codes are in docs/api.md)."""
    found = [
        ("400", "invalid request"),
        ("401", "no or unknown key"),
        ("403", "the key's role may not"),
    ]
    if path.startswith("/v1/"):
        found += [
            ("413", "body_too_large: over the body limit"),
            ("415", "unsupported_encoding: a Content-Encoding other than gzip"),
            ("429", "rate_limited: over the write key's rate"),
        ]
    if "{lead_id}" in path:
        found.append(("404", "lead_not_found: no lead has this id"))
        if method == "post":
            found.append(("409", "transition_not_allowed: with `stage` and `allowed_actions`"))
    elif "{" in path:
        found.append(("404", "no such model version, job or subscription"))
    found.append(("503", "store_unavailable (or, for ingestion, no_active_model): retry"))
    return found


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A route's `openapi_extra` for a JSON body it reads itself (not through a model)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
