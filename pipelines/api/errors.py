"""The API's one error shape (DESIGN section 10): `{"error": CODE, "detail": TEXT}`.

A server error never carries a traceback or a value from the request: its detail is fixed text,
and the exception goes to the server's log by type only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("consent_center.api")


class ApiError(Exception):
    """An answer that is an error: status, code and one line of detail (no personal data)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


#: the codes of plain HTTP errors the framework raises (unknown path, wrong method)
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def _validation_detail(error: RequestValidationError) -> str:
    """Which fields are wrong and how, never their values."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(error_body(error.code, error.detail), error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _validation_detail(error)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(error.detail)), error.status_code, headers=error.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "internal error on %s %s: %s", request.method, request.url.path, type(error).__name__
        )
        return JSONResponse(error_body("internal_error", "the server could not answer"), 500)
