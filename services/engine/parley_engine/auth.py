"""Symbl's application auth: ``POST /oauth2/token:generate`` and the access-token check on every other path.

The tokens themselves are ``parley_engine.tokens``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from parley_shared.http_errors import ApiProblem
from parley_shared.validation import describe_validation_error
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parley_engine.dependencies import TokenAuthorityDep

TOKEN_REJECTED = "Token validation failed for provided token."


class TokenRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description='always "application"')
    app_id: str = Field(alias="appId")
    app_secret: str = Field(alias="appSecret")


def presented_token(request: Request) -> str | None:
    """The token in any of the forms Symbl accepts: ``Authorization: Bearer``, ``x-api-key``, ``?access_token=``."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or request.query_params.get("access_token") or None


async def require_access_token(request: Request, authority: TokenAuthorityDep) -> None:
    token = presented_token(request)
    if token is None or not authority.verify(token):
        raise ApiProblem(401, TOKEN_REJECTED)


AccessChecked = Annotated[None, Depends(require_access_token)]


def build_auth_router() -> APIRouter:
    router = APIRouter(tags=["authentication"])

    @router.post("/oauth2/token:generate", summary="Generate an access token for an application")
    async def generate_token(request: Request, authority: TokenAuthorityDep) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = TokenRequest.model_validate_json(raw or b"{}")
        except ValidationError as error:
            raise ApiProblem(400, f"invalid token request: {describe_validation_error(error)}") from None
        if body.type != "application":
            raise ApiProblem(400, 'invalid token request: type: only "application" is supported')
        if not authority.credentials_match(body.app_id, body.app_secret):
            raise ApiProblem(401, "The appId or appSecret is not valid.")
        token, expires_in = await authority.token_for(body.app_id)
        return {"accessToken": token, "expiresIn": expires_in}

    return router
