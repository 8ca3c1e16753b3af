"""The error family and the one handler that renders RFC 9457 problem details.

Services raise :class:`AppError` subclasses; they never raise ``HTTPException``. Every error
body carries a stable machine ``code`` and the request id, never a stack trace or personal data.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://childlink.example/problems/"


class AppError(Exception):
    status: int = 500
    code: str = "internal_error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        if code:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        error = "invalid_token" if detail else None
        challenge = 'Bearer realm="childlink"'
        if error:
            challenge += f', error="{error}"'
        super().__init__(detail, code=code, headers={"WWW-Authenticate": challenge})


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class InsufficientScope(Forbidden):
    code, title = "insufficient_scope", "The token lacks a required scope"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(AppError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(AppError):
    status, code, title = 412, "precondition_failed", "The resource has changed"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Unprocessable(AppError):
    status, code, title = 422, "unprocessable", "The request cannot be processed"


class PreconditionRequired(AppError):
    status, code, title = 428, "precondition_required", "If-Match header required"


class TooManyRequests(AppError):
    status, code, title = 429, "too_many_requests", "Too many requests"


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "Service temporarily unavailable"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, as every error response in this API is shaped."""

    type: str = Field(examples=[PROBLEM_BASE + "not_found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    code: str = Field(description="Stable machine-readable error code.", examples=["not_found"])
    detail: str | None = Field(default=None, examples=["No child with this id."])
    instance: str | None = Field(default=None, examples=["/v1/children/…"])
    request_id: str | None = Field(default=None, examples=["2f1c7e0a9b5d4c1e"])
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For validation errors: each failing field and why."
    )


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the errors a route can answer with."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        out[error.status] = {
            "model": ProblemDetail,
            "description": error.title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
        }
    return out


_STATUS_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("unprocessable", "The request cannot be processed"),
    429: ("too_many_requests", "Too many requests"),
}


def _clean_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field paths and messages only: the offending input is not echoed back (it may hold
    names or ID numbers)."""
    cleaned = []
    for err in exc.errors():
        cleaned.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return cleaned


def _problem_response_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
    }


def _document_problems(app: FastAPI) -> None:
    """Make the spec list the problems every route can answer with, in the shape really sent.

    FastAPI documents request-validation failures as its own ``HTTPValidationError`` JSON, but
    the handler below answers with a problem document. And any operation taking a JSON body can
    meet a malformed body (400), an oversize one (413) or another media type (415), which the
    routes do not declare one by one.
    """
    default_openapi = app.openapi
    body_problems = {
        "400": _problem_response_doc("Malformed JSON body."),
        "413": _problem_response_doc(PayloadTooLarge.title + " (the limit is 1 MiB)."),
        "415": _problem_response_doc("The body is not `application/json`."),
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default_openapi()
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                    responses["422"] = _problem_response_doc(
                        "The request is not valid; `errors` lists each failing field."
                    )
                if "application/json" in operation.get("requestBody", {}).get("content", {}):
                    for status, doc in body_problems.items():
                        responses.setdefault(status, doc)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ProblemDetail", ProblemDetail.model_json_schema())
        if "HTTPValidationError" not in json.dumps(schema.get("paths", {})):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_METHODS = {"get", "head", "post", "put", "patch", "delete", "options"}


def _allowed_methods(request: Request) -> str | None:
    """Starlette's 405 names only the methods of the first route that matched the path; a path
    served by several routes (GET and POST as separate functions) allows all of theirs. The
    spec lists them per path template, so answer from it."""
    template = getattr(request.scope.get("route"), "path", None)
    if not isinstance(template, str):
        return None
    path_item = request.app.openapi().get("paths", {}).get(template) or {}
    methods = sorted(method.upper() for method in path_item if method in _METHODS)
    return ", ".join(methods) or None


def install_error_handlers(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem_response(
            request,
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_validation_errors(exc)
        malformed = any(e["type"] == "json_invalid" for e in errors)
        code = "malformed_json" if malformed else "validation_failed"
        status = 400 if malformed else 422
        title = "Malformed JSON body" if malformed else "The request is not valid"
        return problem_response(
            request,
            status=status,
            code=code,
            title=title,
            detail="See `errors` for each failing field.",
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _STATUS_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
        if exc.status_code == 404:
            detail = "No such resource."
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            if allowed:
                headers["Allow"] = allowed
        return problem_response(
            request,
            status=exc.status_code,
            code=code,
            title=title,
            detail=detail,
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return problem_response(
            request,
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="The error has been logged; quote the request id when reporting it.",
        )


_UNSTORABLE_TEXT = {"22021", "22P05"}
"""SQLSTATEs character_not_in_repertoire and untranslatable_character."""


def install_database_error_handlers(app: FastAPI) -> None:
    """A database that cannot be reached is a 503 (retry later), not a 500 (a bug)."""
    import asyncpg  # local: errors.py stays importable without the driver's types
    from sqlalchemy import exc as sa_exc

    unavailable = (
        OSError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.AdminShutdownError,
    )

    async def _unavailable(request: Request) -> JSONResponse:
        return problem_response(
            request,
            status=503,
            code="database_unavailable",
            title="Service temporarily unavailable",
            detail="The database cannot be reached; nothing was changed. Retry shortly.",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(sa_exc.DBAPIError)
    async def _dbapi(request: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        orig = getattr(exc.orig, "__cause__", None) or exc.orig
        if exc.connection_invalidated or isinstance(orig, unavailable) or isinstance(exc.orig, unavailable):
            return await _unavailable(request)
        if getattr(orig, "sqlstate", None) in _UNSTORABLE_TEXT:
            # PostgreSQL text cannot hold U+0000, which JSON, query strings and paths can carry:
            # the caller's input, not a fault of ours. Nothing was written (the transaction rolls
            # back). Checked here once rather than in every model with a text field.
            return problem_response(
                request,
                status=422,
                code="unstorable_text",
                title="The request cannot be processed",
                detail="Text may not contain NUL (U+0000) characters.",
            )
        logger.error("database error", extra={"error_type": type(orig).__name__})
        return problem_response(
            request,
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="The error has been logged; quote the request id when reporting it.",
        )

    @app.exception_handler(sa_exc.TimeoutError)
    async def _pool_timeout(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        return await _unavailable(request)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        return await _unavailable(request)
