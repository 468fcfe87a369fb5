"""One JSON error shape everywhere: `{"code": ..., "message": ...}` plus details.

Errors the domain raises (`QualifyError` and its kinds) map to statuses here, in one place.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException

from qualify.api.responses import JsonResponse
from qualify.errors import (
    LeadNotFound,
    ModelError,
    NoActiveModel,
    QualifyError,
    StoreError,
    SubscriptionNotFound,
    TransitionNotAllowed,
)

__all__ = ["ApiProblem", "install"]

log = logging.getLogger("qualify.api")


class ApiProblem(Exception):
    """An error answer: HTTP status, a stable `code`, a message for people, and details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.details = headers, details

    def response(self) -> JsonResponse:
        body = {"code": self.code, "message": self.message, **self.details}
        return JsonResponse(body, status_code=self.status, headers=self.headers)


def from_domain(exc: QualifyError) -> ApiProblem:
    if isinstance(exc, LeadNotFound):  # the domain's message names CLI commands
        message = f"no lead `{exc.lead_id}` (its userId or anonymousId): see GET /api/leads"
        return ApiProblem(404, "lead_not_found", message)
    if isinstance(exc, SubscriptionNotFound):
        message = f"no active webhook subscription #{exc.sub_id}: see GET /api/webhooks"
        return ApiProblem(404, "webhook_not_found", message)
    if isinstance(exc, TransitionNotAllowed):
        return ApiProblem(
            409,
            "transition_not_allowed",
            str(exc),
            lead=exc.lead_id,
            stage=str(exc.stage),
            action=exc.action,
            allowed_actions=list(exc.allowed),
        )
    if isinstance(exc, ModelError):
        problems = [
            {"line": p.line, "column": p.column, "message": p.message} for p in exc.problems
        ]
        return ApiProblem(422, "invalid_model", str(exc), problems=problems)
    if isinstance(exc, NoActiveModel):
        return ApiProblem(503, "no_active_model", str(exc))
    if isinstance(exc, StoreError):
        return ApiProblem(503, "store_unavailable", str(exc))
    return ApiProblem(400, "invalid_request", str(exc))


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found"}


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the same shape."""

    @app.exception_handler(ApiProblem)
    async def _problem(_: Request, exc: ApiProblem) -> JsonResponse:
        return exc.response()

    @app.exception_handler(QualifyError)
    async def _domain(request: Request, exc: QualifyError) -> JsonResponse:
        problem = from_domain(exc)
        if problem.status >= 500:
            _log_failure(request, problem, exc)
        return problem.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JsonResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return ApiProblem(400, "invalid_json", "the body is not valid JSON").response()
        reasons = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            if not where and e.get("type") in ("model_attributes_type", "dict_type"):
                reasons.append("the body must be a JSON object (Content-Type: application/json)")
                continue
            if not where:
                where = "the JSON body"
            elif e.get("loc", ("",))[0] == "query":
                where = f"query parameter `{where.removeprefix('query.')}`"
            else:
                where = f"`{where}`"
            message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            reasons.append(f"{where}: {message}")
        return ApiProblem(400, "invalid_request", "; ".join(reasons)).response()

    @app.exception_handler(SQLAlchemyError)
    async def _store(request: Request, exc: SQLAlchemyError) -> JsonResponse:
        reason = getattr(exc, "orig", None) or exc
        message = f"the store refused the operation: {reason}"
        if isinstance(exc, OperationalError | InterfaceError):  # the database is unreachable
            problem = ApiProblem(503, "store_unavailable", message)
        else:
            problem = ApiProblem(500, "store_error", message)
        _log_failure(request, problem, exc)
        return problem.response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JsonResponse:
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        problem = ApiProblem(500, "internal_error", message)
        _log_failure(request, problem, exc)
        return problem.response()

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JsonResponse:
        code = _CODES.get(exc.status_code, "http_error")
        return ApiProblem(exc.status_code, code, str(exc.detail)).response()


def _log_failure(request: Request, problem: ApiProblem, exc: BaseException) -> None:
    """A 5xx is the server's failure, not the caller's: the caller gets one line, so the
    operator's log gets the request and the whole traceback (which statement, which lock)."""
    log.error(
        "%s %s answered %d %s: %s",
        request.method,
        request.url.path,
        problem.status,
        problem.code,
        problem.message,
        exc_info=exc,
    )
