"""The Experience API and the page it makes.

``POST /v1/conversations/{conversationId}/experiences`` (an access token, as every Symbl API) answers
``{"name", "url"}``; the URL is ``<base>/experiences/<token>``, and the token alone opens the page, its kept media
(``<token>/media``, with HTTP Range so the player can seek) and nothing else. The page's assets
(``/experiences/assets/…``) are public files of this package. A refused page URL answers an HTML page to a browser
and ``{"message": …}`` to anything else, with the same status: 403 forged, 410 expired, 404 conversation gone.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
import weakref
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from parley_shared.http_errors import ApiProblem, json_object_body
from pydantic import ValidationError

from parley_engine.async_api import CONVERSATION_NOT_FOUND, invalid
from parley_engine.auth import require_access_token
from parley_engine.dependencies import ComponentsDep, ConversationsDep, JobsDep, SettingsDep
from parley_engine.experience.page import (
    ASSETS,
    Player,
    Tuning,
    asset,
    asset_version,
    conversation_page,
    render_page,
    render_refusal,
)
from parley_engine.experience.request import (
    THIRTY_DAYS,
    ExperienceCreated,
    ExperienceRequest,
    openapi_request_body,
    sounds_like_audio,
    url_origin,
)
from parley_engine.experience.signing import ExpiredLink, ForgedLink, PageGrant, PageSigner
from parley_engine.media_store import KeptMedia
from parley_engine.settings import EngineSettings
from parley_engine.store import ConversationNotFound, ConversationRow, CredentialStore

PAGES = "/experiences"
_ASSET_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
_MEDIA_TYPES = {
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
}
_WAITING = ("scheduled", "in_progress")


# One page signer per engine (per credential store), made from its signing key (a database read) at first use.
_signers: weakref.WeakKeyDictionary[CredentialStore, PageSigner] = weakref.WeakKeyDictionary()


async def page_signer(components: ComponentsDep) -> PageSigner:
    credentials = components.store.credentials
    signer = _signers.get(credentials)
    if signer is None:
        signer = _signers[credentials] = PageSigner(await credentials.signing_key())
    return signer


SignerDep = Annotated[PageSigner, Depends(page_signer)]


def expiry(requested: int | None, settings: EngineSettings, now: float) -> int | None:
    """When a new page URL stops working (Unix seconds), or None for never; ``ApiProblem`` past the engine's limit."""
    longest = settings.experience_url_max_seconds
    seconds = requested if requested is not None else min(THIRTY_DAYS, longest or THIRTY_DAYS)
    if longest is not None and (seconds == 0 or seconds > longest):
        raise ApiProblem(
            400,
            f"invalid request: summaryURLExpiresIn: must be between 1 and {longest} seconds on this engine "
            "(PARLEY_EXPERIENCE_URL_MAX_SECONDS)",
        )
    return None if seconds == 0 else int(now) + seconds


def _player(grant: PageGrant, row: ConversationRow, kept: Path | None, token: str) -> Player | None:
    if grant.media_url is not None:
        audio = grant.name == "audio-summary" or sounds_like_audio(grant.media_url)
        return Player(grant.media_url, "audio" if audio else "video")
    if kept is not None:
        # Relative to the page (<base>/experiences/<token>), so it works behind a proxy's path prefix too.
        return Player(f"{token}/media", "video" if row.source == "video" else "audio")
    return None


def content_security_policy(grant: PageGrant, nonce: str) -> str:
    images = " ".join(dict.fromkeys(url_origin(url) for url in (grant.logo, grant.favicon) if url))
    media = url_origin(grant.media_url) if grant.media_url else ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            f"img-src 'self' {images}".rstrip(),
            f"media-src 'self' {media}".rstrip(),
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _refusal(request: Request, status: int, title: str, message: str, *, assets_path: str = "assets") -> Response:
    """A browser gets a page that says why; an API client gets Symbl's ``{"message": …}``."""
    if "text/html" in request.headers.get("accept", ""):
        html = render_refusal(status=status, title=title, message=message, assets_path=assets_path)
        return HTMLResponse(html, status_code=status, headers=_PRIVATE)
    return JSONResponse({"message": f"{title}. {message}"}, status_code=status, headers=_PRIVATE)


_PRIVATE = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}


def build_experience_router() -> APIRouter:
    router = APIRouter(tags=["experiences"])

    async def conversation_row(conversations: ConversationsDep, conversation_id: str) -> ConversationRow:
        try:
            return await conversations.conversation(conversation_id)
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None

    @router.post(
        "/v1/conversations/{conversationId}/experiences",
        summary="Create a summary page (Experience API): verbose-text-summary, video-summary or audio-summary",
        dependencies=[Depends(require_access_token)],
        openapi_extra={"requestBody": openapi_request_body()},
    )
    async def create_experience(
        request: Request,
        conversationId: str,
        conversations: ConversationsDep,
        settings: SettingsDep,
        signer: SignerDep,
    ) -> ExperienceCreated:
        row = await conversation_row(conversations, conversationId)
        body = await json_object_body(request)
        try:
            wanted = ExperienceRequest.model_validate(body)
        except ValidationError as error:
            raise invalid(error) from None
        if wanted.video_url and wanted.audio_url:
            raise ApiProblem(400, "invalid request: give videoUrl or audioUrl, not both")
        needed = {"video-summary": "videoUrl", "audio-summary": "audioUrl"}.get(wanted.name)
        if needed and wanted.media_url is None and KeptMedia(settings.kept_media_dir).path(row.id) is None:
            raise ApiProblem(
                400,
                f"invalid request: {needed}: required for {wanted.name}: the engine kept no media of this conversation",
            )
        colors, font = wanted.color, wanted.font
        grant = PageGrant(
            conversation_id=row.id,
            name=wanted.name,
            expires_at=expiry(wanted.summary_url_expires_in, settings, time.time()),
            media_url=wanted.media_url,
            logo=wanted.logo,
            favicon=wanted.favicon,
            background=colors.background if colors else None,
            topics_color=colors.topics_filter if colors else None,
            insights_color=colors.insights_filter if colors else None,
            font=font.family if font else None,
        )
        base = (settings.public_base_url or str(request.base_url)).rstrip("/")
        return ExperienceCreated(name=wanted.name, url=f"{base}{PAGES}/{signer.sign(grant)}")

    @router.get(PAGES + "/assets/{name}", include_in_schema=False)
    async def page_asset(name: str, v: str | None = None) -> Response:
        if name not in ASSETS:
            raise ApiProblem(404, f"no such asset: {name}")
        # A versioned URL (the page names each asset with its content's hash) never changes: cache it for a year.
        cache = "public, max-age=31536000, immutable" if v == asset_version(name) else "no-cache"
        return Response(
            asset(name),
            media_type=_ASSET_TYPES[Path(name).suffix],
            headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
        )

    @router.get(PAGES + "/{token}", include_in_schema=False, response_model=None)
    async def page(
        request: Request,
        token: str,
        conversations: ConversationsDep,
        jobs: JobsDep,
        settings: SettingsDep,
        signer: SignerDep,
        min_score: Annotated[float, Query(alias="insights.minScore", ge=0, le=1)] = 0.0,
        topics_enabled: Annotated[bool, Query(alias="topics.enabled")] = True,
        topics_order: Annotated[Literal["score", "position"], Query(alias="topics.orderBy")] = "score",
    ) -> Response:
        opened = _open(request, signer, token)
        if isinstance(opened, Response):
            return opened
        try:
            row = await conversations.conversation(opened.conversation_id)
        except ConversationNotFound:
            return _refusal(
                request, 404, "This conversation no longer exists", "It was deleted after the link was made."
            )
        insights = await conversations.insights(row.id)
        processing = any(job.status in _WAITING for job in await jobs.conversation_jobs(row.id))
        kept = KeptMedia(settings.kept_media_dir).path(row.id)
        shown = conversation_page(
            row,
            insights,
            opened,
            player=_player(opened, row, kept, token),
            processing=processing,
            tuning=Tuning(min_score, topics_enabled, topics_order),
        )
        nonce = secrets.token_urlsafe(16)
        return HTMLResponse(
            render_page(shown, assets_path="assets", nonce=nonce),
            headers={**_PRIVATE, "Content-Security-Policy": content_security_policy(opened, nonce)},
        )

    @router.get(PAGES + "/{token}/media", include_in_schema=False, response_model=None)
    async def page_media(
        request: Request, token: str, conversations: ConversationsDep, settings: SettingsDep, signer: SignerDep
    ) -> Response:
        opened = _open(request, signer, token, assets_path="../assets")
        if isinstance(opened, Response):
            return opened
        row = await conversation_row(conversations, opened.conversation_id)
        kept = KeptMedia(settings.kept_media_dir).path(row.id)
        if kept is None:
            raise ApiProblem(404, "the engine kept no media of this conversation")
        media_type = _MEDIA_TYPES.get(kept.suffix.lower()) or mimetypes.guess_type(kept.name)[0]
        return FileResponse(
            kept,
            media_type=media_type or ("video/mp4" if row.source == "video" else "application/octet-stream"),
            headers={"Cache-Control": "private, max-age=3600", "Referrer-Policy": "no-referrer"},
        )

    return router


def _open(request: Request, signer: PageSigner, token: str, *, assets_path: str = "assets") -> PageGrant | Response:
    """The grant of a page URL's token, or the refusal to answer with (``assets_path``: relative to the URL)."""
    try:
        return signer.open(token)
    except ExpiredLink as expired:
        when = time.strftime("%H:%M UTC on %d %B %Y", time.gmtime(expired.expired_at))
        explained = f"It worked until {when}. Ask for a new one."
        return _refusal(request, 410, "This summary link has expired", explained, assets_path=assets_path)
    except ForgedLink:
        explained = "It was altered, or it was not made by this engine."
        return _refusal(request, 403, "This summary link is not valid", explained, assets_path=assets_path)
