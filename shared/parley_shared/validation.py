"""Readable descriptions of pydantic validation errors, for 4xx bodies and dead letters."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def validation_problems(error: ValidationError) -> list[dict[str, Any]]:
    """One entry per problem: where (a dotted path) and what is wrong. Input values are left out on purpose."""
    return [
        {"field": ".".join(str(part) for part in problem["loc"]) or "(body)", "problem": problem["msg"]}
        for problem in error.errors(include_url=False, include_input=False)
    ]


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    problems = validation_problems(error)
    described = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:limit])
    if len(problems) > limit:
        described += f"; and {len(problems) - limit} more"
    return described
