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
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "HTTPValidationError" in str(responses.get("422", "")):
                    del responses["422"]  # FastAPI's validation answer: 400 here
                if operation.get("security") == []:  # open routes (health, metrics)
                    continue
                for status, what in (
                    ("400", "invalid request"),
                    ("401", "no or unknown key"),
                    ("403", "the key's role may not"),
                ):
                    responses.setdefault(status, {"description": what, **ERROR_BODY})
        app.openapi_schema = doc
        return doc

    app.openapi = schema  # type: ignore[method-assign]


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A route's `openapi_extra` for a JSON body it reads itself (not through a model)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
