"""The OpenAPI document as the service really behaves: keys (Bearer or Basic) for the
Authorize button in `/docs`, request bodies of the routes that read raw bodies, and the one
error shape (FastAPI's generated 422 validation answers are 400 here)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["install"]

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
        error = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
        for path, operations in doc.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status, what in (
                    ("400", "invalid request"),
                    ("401", "no or unknown key"),
                    ("403", "the key's role may not"),
                ):
                    responses.setdefault(status, {"description": what, **error})
                if path == "/v1/batch":
                    operation["requestBody"] = _body(BATCH)
                elif path.startswith("/v1/"):
                    operation["requestBody"] = _body(MESSAGE)
                elif (
                    path == "/api/models"
                    and "operationId" in operation
                    and "upload" in operation["operationId"]
                ):
                    operation["requestBody"] = {
                        "required": True,
                        "content": {"application/yaml": {"schema": {"type": "string"}}},
                    }
                    operation["responses"]["422"] = {
                        "description": "an invalid model: every problem's line, column, message",
                        **error,
                    }
                    operation.setdefault("parameters", []).append(
                        {
                            "name": "filename",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "default": "model.yaml"},
                        }
                    )
        for path in ("/healthz", "/metrics"):
            for operation in doc["paths"].get(path, {}).values():
                operation["security"] = []
                for status in ("400", "401", "403"):
                    operation["responses"].pop(status, None)
        app.openapi_schema = doc
        return doc

    app.openapi = schema  # type: ignore[method-assign]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}
