"""The Experience page in a real browser: Debian's Chromium, driven by Playwright, against the engine on loopback.

One engine and one browser for the module. The engine holds the same meeting twice: as a text conversation (no
media: no player) and as a recorded call (a WAV kept as its media). Each test opens its own page, which fails the
test on any console error or uncaught exception.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from parley_engine.experience.signing import PageGrant, PageSigner
from parley_engine.media_store import KeptMedia
from playwright.async_api import Browser, ConsoleMessage, Error, Page, ViewportSize, expect

from tests.support.engine import RunningEngine, engine_settings, http_server, running_engine
from tests.support.experience_pages import MEETING_MESSAGES, MeetingAnalyzer, chromium, wav_bytes
from tests.support.servers import serving_asgi

DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=375, height=740)
ACTION_ITEM = "Mike will fix the discount code bug by Wednesday."
SAID_AT = {
    "Did the pricing page go live on Friday?": 6.0,
    "I will fix the discount code bug by Wednesday.": 16.0,
    "Great, and I will send the launch notes to marketing.": 21.0,
}


@dataclass(frozen=True)
class Conversation:
    id: str
    message_ids: dict[str, str]  # text → id


@dataclass(frozen=True)
class Served:
    engine: RunningEngine
    base: str
    api: httpx.AsyncClient
    meeting: Conversation
    call: Conversation
    media_host: str

    async def page_url(self, conversation: Conversation, **request: Any) -> str:
        response = await self.api.post(
            f"/v1/conversations/{conversation.id}/experiences",
            json={"name": "verbose-text-summary", **request},
            headers=self.engine.headers,
        )
        assert response.status_code == 200, response.text
        url: str = response.json()["url"]
        assert url.startswith(self.base + "/experiences/")
        return url


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("engine")
    settings = engine_settings(data_dir)
    recording = data_dir / "call.wav"
    recording.write_bytes(wav_bytes(30.0))
    hosted = data_dir / "hosted.wav"
    hosted.write_bytes(wav_bytes(30.0))

    async def hosted_media(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(hosted)  # answers Range requests, as a media host does

    async with (
        running_engine(settings, analyzer=MeetingAnalyzer()) as engine,
        serving_asgi(engine.app) as base,
        http_server({"/recordings/call.wav": hosted_media}) as media_host,
        httpx.AsyncClient(base_url=base) as api,
    ):

        async def conversation() -> Conversation:
            submitted = await engine.submit_text(MEETING_MESSAGES)
            await engine.wait_for_job(submitted["jobId"])
            messages = await api.get(
                f"/v1/conversations/{submitted['conversationId']}/messages", headers=engine.headers
            )
            return Conversation(
                submitted["conversationId"], {message["text"]: message["id"] for message in messages.json()["messages"]}
            )

        meeting, call = await conversation(), await conversation()
        assert KeptMedia(settings.kept_media_dir).keep(call.id, recording)
        yield Served(engine, base, api, meeting, call, media_host)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page; the test fails if the page logged a console error or threw."""
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(5_000)
    opened = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} at {message.location}")

    def on_error(error: Error) -> None:
        problems.append(f"uncaught: {error}")

    opened.on("console", on_console)
    opened.on("pageerror", on_error)
    try:
        yield opened
        assert problems == [], problems
    finally:
        await context.close()


async def player_time(page: Page) -> float:
    seconds: float = await page.eval_on_selector("#player", "player => player.currentTime")
    return seconds


async def ready_player(page: Page) -> None:
    """Waits until the player knows the recording's duration (its metadata came through the signed URL)."""
    await page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=10_000)
    duration = await page.eval_on_selector("#player", "player => player.duration")
    assert duration == pytest.approx(30.0, abs=0.1)


async def test_a_text_meeting_shows_its_summary_insights_transcript_and_charts(served: Served, page: Page) -> None:
    response = await page.goto(await served.page_url(served.meeting))
    assert response is not None and response.status == 200

    await expect(page.get_by_role("heading", level=1)).to_have_text(served.meeting.id)
    summary = page.locator("#summary")
    await expect(summary).to_contain_text("The pricing page is live; a checkout bug remains.")
    action_items = page.locator("#action-items button.moment")
    await expect(action_items).to_have_count(2)
    await expect(action_items.first).to_contain_text(ACTION_ITEM)
    await expect(action_items.first).to_contain_text("due Wed 25 Nov 2026")
    await expect(page.locator("#transcript li.line")).to_have_count(len(MEETING_MESSAGES))
    await expect(page.locator("#transcript")).to_contain_text("Did the pricing page go live on Friday?")
    await expect(page.locator("#player")).to_have_count(0)  # text only: no player

    # The charts are drawn, with the meeting's data in them.
    bars = page.locator("#talk-time-chart rect.bar-fill")
    await expect(bars).to_have_count(3)
    widths = [float(await bar.evaluate("bar => bar.getBBox().width")) for bar in await bars.all()]
    assert widths == sorted(widths, reverse=True) and all(width > 0 for width in widths)
    assert sum(widths) == pytest.approx(100, abs=0.1)  # three shares of all talk
    points = page.locator("#sentiment-chart circle.point")
    await expect(points).to_have_count(len(MEETING_MESSAGES))
    await expect(page.locator("#sentiment-chart circle.point.positive")).to_have_count(2)
    await expect(page.locator("#sentiment-chart circle.point.negative")).to_have_count(2)
    rendered = await points.first.evaluate("point => point.getBoundingClientRect().width")
    assert rendered > 0
    await expect(page.locator("#topics-chart .track-row")).to_have_count(3)
    await expect(page.locator("#topics-chart rect.mark")).to_have_count(6)  # two messages each
    assert await page.locator("#sentiment-chart svg").get_attribute("role") == "img"


async def test_without_a_player_an_insight_takes_you_to_its_transcript_line(served: Served, page: Page) -> None:
    await page.goto(await served.page_url(served.meeting))
    line_id = f"m-{served.meeting.message_ids['Did the pricing page go live on Friday?']}"
    await page.locator("#questions button.moment").click()
    await expect(page.locator(f"#{line_id}")).to_be_focused()
    await expect(page.locator(f"#{line_id}")).to_be_in_viewport()


async def test_clicking_an_action_item_moves_the_player_and_the_transcript_follows(served: Served, page: Page) -> None:
    await page.goto(await served.page_url(served.call))
    await expect(page.locator("audio#player")).to_have_count(1)
    await ready_player(page)

    await page.locator("#action-items button.moment", has_text=ACTION_ITEM).click()
    assert 16.0 <= await player_time(page) < 18.0
    line = page.locator(f"#m-{served.call.message_ids['I will fix the discount code bug by Wednesday.']}")
    await expect(line).to_have_class(re.compile(r"\bis-playing\b"))
    await expect(line).to_have_attribute("aria-current", "true")
    await expect(line).to_be_focused()
    await expect(page.locator("#now-speaking")).to_have_text("Mike")

    # While it plays, the highlight follows the recording.
    await page.eval_on_selector("#player", "player => { player.currentTime = 22.5; }")
    priya = page.locator(f"#m-{served.call.message_ids['Great, and I will send the launch notes to marketing.']}")
    await expect(priya).to_have_attribute("aria-current", "true")
    await expect(line).not_to_have_attribute("aria-current", "true")


async def test_everything_clickable_works_from_the_keyboard(served: Served, page: Page) -> None:
    await page.goto(await served.page_url(served.call))
    await ready_player(page)

    question = page.locator("#questions button.moment")
    await question.focus()
    await page.keyboard.press("Enter")
    assert 6.0 <= await player_time(page) < 8.0

    clock = page.locator("#transcript button.clock").nth(4)  # 0:21, Priya
    await clock.focus()
    await page.keyboard.press("Space")
    assert 21.0 <= await player_time(page) < 23.0
    await expect(clock).to_be_focused()  # a line's own time keeps the focus where it was

    # The first Tab reaches the skip link, which leads to the transcript.
    await page.goto(await served.page_url(served.call))
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the transcript")
    await expect(skip).to_be_focused()
    outline = await skip.evaluate("link => getComputedStyle(link).outlineStyle")
    assert outline == "solid"  # focus is visible


async def test_a_video_summary_plays_the_given_url_from_another_origin(served: Served, page: Page) -> None:
    video_url = f"{served.media_host}/recordings/call.wav"
    await page.goto(await served.page_url(served.meeting, name="video-summary", videoUrl=video_url))
    await expect(page.locator("#player")).to_have_attribute("src", video_url)
    await ready_player(page)  # the Content-Security-Policy lets the media's origin in
    await page.locator("#follow-ups button.moment").click()
    assert 26.0 <= await player_time(page) < 28.0


async def test_topics_highlight_their_lines(served: Served, page: Page) -> None:
    await page.goto(await served.page_url(served.meeting))
    pricing = page.locator("#topics button.topic", has_text="pricing")
    await pricing.click()
    await expect(pricing).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#transcript li.is-topic")).to_have_count(2)
    await pricing.click()
    await expect(pricing).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#transcript li.is-topic")).to_have_count(0)


async def test_custom_colours_and_a_phone_width(served: Served, browser: Browser) -> None:
    url = await served.page_url(served.call, color={"background": "#0A2136", "insightsFilter": "#ffff00"})
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(5_000)
    try:
        phone = await context.new_page()
        await phone.goto(url)
        colours = await phone.evaluate(
            "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
        )
        assert colours == ["rgb(10, 33, 54)", "rgb(255, 255, 255)"]
        # Nothing wider than the phone: no sideways scrolling.
        assert await phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        # The player stays in view while the page scrolls to the transcript.
        await phone.locator("#transcript").scroll_into_view_if_needed()
        await expect(phone.locator("#player")).to_be_in_viewport()
    finally:
        await context.close()


async def test_expired_and_forged_urls_are_refused(served: Served, browser: Browser) -> None:
    url = await served.page_url(served.call)
    signer = PageSigner(await served.engine.components.store.credentials.signing_key())
    expired = signer.sign(
        PageGrant(conversation_id=served.call.id, name="verbose-text-summary", expires_at=int(time.time()) - 1)
    )
    payload, signature = url.rsplit("/", 1)[1].split(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    # Not the page fixture: a refused page's own 4xx is logged as a console error, as it should be.
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(5_000)
    try:
        page = await context.new_page()
        refused = await page.goto(f"{served.base}/experiences/{expired}")
        assert refused is not None and refused.status == 410
        await expect(page.get_by_role("heading", level=1)).to_have_text("This summary link has expired")

        forged = await page.goto(f"{served.base}/experiences/{tampered}.{signature}")
        assert forged is not None and forged.status == 403
        await expect(page.get_by_role("heading", level=1)).to_have_text("This summary link is not valid")
        media = await page.request.get(f"{served.base}/experiences/{tampered}.{signature}/media")
        assert media.status == 403
    finally:
        await context.close()
