"""Errors of every HTTP API as JSON with a ``message`` (Symbl's shape) that says what was wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley_shared.validation import validation_problems


class ApiProblem(Exception):
    """An error with an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


async def json_object_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object; a 400 that says why for anything else."""
    try:
        body: Any = await request.json()
    except ValueError:
        raise ApiProblem(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid request: the body must be a JSON object")
    return body


def install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with a ``message`` (Symbl's shape) that says what was wrong."""

    @app.exception_handler(ApiProblem)
    async def on_problem(_: Request, problem: ApiProblem) -> JSONResponse:
        return JSONResponse({"message": problem.message, **problem.details}, status_code=problem.status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body that cannot be parsed, 404, 405) get the same {"message": …} shape.
        message = error.detail if isinstance(error.detail, str) else "request refused"
        return JSONResponse({"message": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in error.errors()]
        first = problems[0] if problems else {"field": "(body)", "problem": "invalid"}
        return JSONResponse(
            {"message": f"invalid request: {first['field']}: {first['problem']}", "errors": problems},
            status_code=400,
        )

    @app.exception_handler(ValidationError)
    async def on_model_invalid(_: Request, error: ValidationError) -> JSONResponse:
        problems = validation_problems(error)
        return JSONResponse(
            {
                "message": f"invalid request: {problems[0]['field']}: {problems[0]['problem']}",
                "errors": problems,
            },
            status_code=400,
        )
