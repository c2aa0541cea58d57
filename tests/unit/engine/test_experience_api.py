"""The Experience API and the page it makes, over the real app and store (fake analysis), without a browser."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from parley_engine.experience.signing import PageGrant, PageSigner
from parley_engine.media_store import KeptMedia

from tests.support.engine import TEXT_MESSAGES, FakeAnalyzer, Gate, RunningEngine, engine_settings, running_engine
from tests.support.experience_pages import MEETING_MESSAGES, MeetingAnalyzer, wav_bytes

HTML = {"Accept": "text/html,application/xhtml+xml"}


async def meeting(engine: RunningEngine, messages: list[dict[str, Any]] = MEETING_MESSAGES) -> str:
    body = await engine.submit_text(messages)
    await engine.wait_for_job(body["jobId"])
    return str(body["conversationId"])


async def experience(engine: RunningEngine, conversation_id: str, **request: Any) -> Any:
    response = await engine.client.post(
        f"/v1/conversations/{conversation_id}/experiences",
        json={"name": "verbose-text-summary", **request},
        headers=engine.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def page_path(url: str) -> str:
    return url.removeprefix("http://engine")


async def signer_of(engine: RunningEngine) -> PageSigner:
    return PageSigner(await engine.components.store.credentials.signing_key())


async def test_the_answer_has_symbls_shape_and_its_url_opens_the_page_without_an_access_token(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        made = await experience(engine, conversation_id)
        assert set(made) == {"name", "url"}
        assert made["name"] == "verbose-text-summary"
        assert re.fullmatch(r"http://engine/experiences/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", made["url"])

        page = await engine.client.get(page_path(made["url"]), headers=HTML)  # no Authorization
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "The pricing page is live; a checkout bug remains." in html  # summary
        assert "Mike will fix the discount code bug by Wednesday." in html  # action item
        assert "due Wed 25 Nov 2026" in html and "assigned to Mike" in html
        assert "Did the pricing page go live on Friday?" in html  # question
        assert html.count('class="line speaker-') == len(MEETING_MESSAGES)  # transcript
        assert "Monday 23 November 2026" in html and "16:00 UTC" in html and "0:29" in html
        for name in ("Natalia", "Mike", "Priya"):
            assert f"<li>{name}</li>" in html  # attendees
        assert '<audio id="player"' not in html and '<video id="player"' not in html  # text: no player

        # Every other request of the page is a public asset, relative to the page.
        assert re.findall(r'(?:href|src)="(assets/[^"]+)"', html)
        assets = set(re.findall(r'(?:href|src)="(assets/[^"?]+)', html))
        assert assets == {"assets/favicon.svg", "assets/page.css", "assets/page.js"}


async def test_the_page_is_guarded_by_its_headers(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        made = await experience(
            engine,
            conversation_id,
            name="video-summary",
            videoUrl="https://media.example.com:8443/calls/review.mp4",
            logo="https://cdn.example.com/logo.png",
            favicon="https://icons.example.org/favicon.ico",
        )
        page = await engine.client.get(page_path(made["url"]), headers=HTML)
        policy = dict(part.split(" ", 1) for part in page.headers["content-security-policy"].split("; "))
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'"
        assert policy["img-src"] == "'self' https://cdn.example.com https://icons.example.org"
        assert policy["media-src"] == "'self' https://media.example.com:8443"
        nonce = re.search(r"'nonce-([^']+)'", policy["style-src"])
        assert nonce is not None and f'<style nonce="{nonce.group(1)}">' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"  # the URL is the key: never sent to the logo's host
        assert page.headers["cache-control"] == "private, no-store"
        assert 'src="https://media.example.com:8443/calls/review.mp4"' in page.text
        assert '<video id="player"' in page.text
        assert 'src="https://cdn.example.com/logo.png"' in page.text
        # Each page has its own nonce.
        again = await engine.client.get(page_path(made["url"]), headers=HTML)
        assert again.headers["content-security-policy"] != page.headers["content-security-policy"]


async def test_custom_colours_and_font_reach_the_page_readable(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        made = await experience(
            engine,
            conversation_id,
            color={"background": "#0A2136", "topicsFilter": "#FF0000", "insightsFilter": "#ffff00"},
            font={"family": "Fira Sans"},
        )
        html = (await engine.client.get(page_path(made["url"]), headers=HTML)).text
        assert "--bg: #0A2136;" in html
        assert "--text: #ffffff;" in html  # light text on the dark background
        assert "--topics: #FF0000;" in html
        assert '--font: "Fira Sans", system-ui' in html
        assert "color-scheme: dark;" in html


async def test_an_audio_conversations_kept_media_plays_from_the_page_and_seeks_with_ranges(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path)
    async with running_engine(settings, analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        recording = tmp_path / "call.wav"
        recording.write_bytes(wav_bytes(3.0))
        size = recording.stat().st_size
        assert KeptMedia(settings.kept_media_dir).keep(conversation_id, recording)

        made = await experience(engine, conversation_id, name="video-summary")  # no videoUrl: the kept media
        path = page_path(made["url"])
        html = (await engine.client.get(path, headers=HTML)).text
        token = path.rsplit("/", 1)[1]
        assert f'<audio id="player" controls preload="metadata" src="{token}/media">' in html

        whole = await engine.client.get(f"{path}/media")
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "audio/wav"
        assert whole.headers["accept-ranges"] == "bytes"
        assert len(whole.content) == size
        part = await engine.client.get(f"{path}/media", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        assert part.content == whole.content[100:200]

        forged = await engine.client.get(f"{path[:-5]}AAAAA/media")
        assert forged.status_code == 403
        assert "not valid" in forged.json()["message"]
        # A browser sent to a refused media URL gets the refusal page, its stylesheet one level up.
        forged_page = await engine.client.get(f"{path[:-5]}AAAAA/media", headers=HTML)
        assert forged_page.status_code == 403
        assert 'href="../assets/page.css?v=' in forged_page.text


async def test_media_and_player_when_nothing_was_kept(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        made = await experience(engine, conversation_id)
        media = await engine.client.get(page_path(made["url"]) + "/media")
        assert media.status_code == 404
        assert media.json() == {"message": "the engine kept no media of this conversation"}

        audio = await experience(engine, conversation_id, name="audio-summary", audioUrl="https://x.example/a.mp3")
        html = (await engine.client.get(page_path(audio["url"]), headers=HTML)).text
        assert '<audio id="player" controls preload="metadata" src="https://x.example/a.mp3">' in html
        # Symbl plays an audio file given as videoUrl without a picture.
        sound = await experience(engine, conversation_id, name="video-summary", videoUrl="https://x.example/b.WAV")
        assert '<audio id="player"' in (await engine.client.get(page_path(sound["url"]), headers=HTML)).text


async def test_forged_expired_and_deleted_pages_are_refused_as_html_to_browsers_and_json_to_clients(
    tmp_path: Path,
) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        other_id = await meeting(engine, TEXT_MESSAGES)
        path = page_path((await experience(engine, conversation_id))["url"])
        payload, signature = path.removeprefix("/experiences/").split(".")

        signer = await signer_of(engine)
        other_payload = signer.sign(PageGrant(conversation_id=other_id, name="verbose-text-summary")).split(".")[0]
        elsewhere = PageSigner(b"another engine's key").sign(
            PageGrant(conversation_id=conversation_id, name="verbose-text-summary")
        )
        middle = len(signature) // 2
        forgeries = [
            f"/experiences/{other_payload}.{signature}",  # another conversation under this signature
            f"/experiences/{payload}.{signature[:middle]}{'A' if signature[middle] != 'A' else 'B'}"
            f"{signature[middle + 1 :]}",
            f"/experiences/{payload}.{signature}A",
            f"/experiences/{payload}",
            f"/experiences/{elsewhere}",
            "/experiences/not-a-token",
        ]
        for forged in forgeries:
            as_page = await engine.client.get(forged, headers=HTML)
            assert as_page.status_code == 403, forged
            assert as_page.headers["content-type"].startswith("text/html")
            assert "This summary link is not valid" in as_page.text
            as_api = await engine.client.get(forged)
            assert as_api.status_code == 403
            assert as_api.json() == {
                "message": "This summary link is not valid. It was altered, or it was not made by this engine."
            }

        expired = signer.sign(
            PageGrant(conversation_id=conversation_id, name="verbose-text-summary", expires_at=int(time.time()) - 5)
        )
        refused = await engine.client.get(f"/experiences/{expired}", headers=HTML)
        assert refused.status_code == 410
        assert "This summary link has expired" in refused.text
        assert (await engine.client.get(f"/experiences/{expired}/media")).status_code == 410

        deleted = await engine.client.delete(f"/v1/conversations/{conversation_id}", headers=engine.headers)
        assert deleted.status_code == 200
        gone = await engine.client.get(path, headers=HTML)
        assert gone.status_code == 404
        assert "This conversation no longer exists" in gone.text


async def test_the_url_lasts_as_long_as_asked(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        signer = await signer_of(engine)

        def grant_of(url: str) -> PageGrant:
            return signer.open(url.rsplit("/", 1)[1])

        now = time.time()
        default = grant_of((await experience(engine, conversation_id))["url"])
        assert default.expires_at is not None and abs(default.expires_at - (now + 2592000)) < 5  # Symbl: 30 days
        hour = grant_of((await experience(engine, conversation_id, summaryURLExpiresIn=3600))["url"])
        assert hour.expires_at is not None and abs(hour.expires_at - (now + 3600)) < 5
        whole_float = grant_of((await experience(engine, conversation_id, summaryURLExpiresIn=60.0))["url"])
        assert whole_float.expires_at is not None and abs(whole_float.expires_at - (now + 60)) < 5
        forever = await experience(engine, conversation_id, summaryURLExpiresIn=0)
        assert grant_of(forever["url"]).expires_at is None
        html = (await engine.client.get(page_path(forever["url"]), headers=HTML)).text
        assert "This link does not expire." in html
        assert signer.open(forever["url"].rsplit("/", 1)[1], now=now + 20 * 365 * 86400).expires_at is None

        short = await experience(engine, conversation_id, summaryURLExpiresIn=1)
        await asyncio.sleep(1.1)
        assert (await engine.client.get(page_path(short["url"]), headers=HTML)).status_code == 410


async def test_an_engine_limit_on_expiry_shortens_the_default_and_refuses_more(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, experience_url_max_seconds=7200)
    async with running_engine(settings, analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        signer = await signer_of(engine)
        made = await experience(engine, conversation_id)
        expires_at = signer.open(made["url"].rsplit("/", 1)[1]).expires_at
        assert expires_at is not None and abs(expires_at - (time.time() + 7200)) < 5
        for too_long in (0, 7201):
            refused = await engine.client.post(
                f"/v1/conversations/{conversation_id}/experiences",
                json={"name": "verbose-text-summary", "summaryURLExpiresIn": too_long},
                headers=engine.headers,
            )
            assert refused.status_code == 400
            assert "between 1 and 7200 seconds" in refused.json()["message"]


async def test_page_urls_are_built_on_the_public_base_url(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, public_base_url="https://calls.example.com/parley/")
    async with running_engine(settings, analyzer=MeetingAnalyzer()) as engine:
        made = await experience(engine, await meeting(engine))
        assert made["url"].startswith("https://calls.example.com/parley/experiences/")


VERBOSE = {"name": "verbose-text-summary"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "meeting-summary"}, "name: Input should be 'verbose-text-summary', 'video-summary' or"),
        ({}, "name: Field required"),
        ({"name": "video-summary"}, "videoUrl: required for video-summary: the engine kept no media"),
        ({"name": "audio-summary"}, "audioUrl: required for audio-summary"),
        ({**VERBOSE, "color": {"background": "red"}}, "color.background: must be a hex colour code such as #0A2136"),
        ({**VERBOSE, "color": {"background": "#12345"}}, "color.background: must be a hex colour code"),
        ({**VERBOSE, "color": {"topicsFilter": "#fff;}"}}, "color.topicsFilter: must be a hex colour code"),
        ({**VERBOSE, "color": {"backgroundColor": "#fff"}}, "color.backgroundColor: Extra inputs are not permitted"),
        ({**VERBOSE, "color": "#ffffff"}, "color: Input should be a valid dictionary"),
        ({**VERBOSE, "font": {"family": 'Roboto"; } body { x: "'}}, "font.family: must be a font family name"),
        ({**VERBOSE, "font": "roboto"}, "font: Input should be a valid dictionary"),
        ({**VERBOSE, "summaryURLExpiresIn": 1.5}, "summaryURLExpiresIn: Input should be a valid integer"),
        ({**VERBOSE, "summaryURLExpiresIn": "3600"}, "summaryURLExpiresIn: Input should be a valid integer"),
        ({**VERBOSE, "summaryURLExpiresIn": True}, "summaryURLExpiresIn: Input should be a valid integer"),
        ({**VERBOSE, "summaryURLExpiresIn": -1}, "summaryURLExpiresIn: Input should be greater than or equal to 0"),
        ({**VERBOSE, "summaryURLExpiresIn": 10**12}, "summaryURLExpiresIn: Input should be less than or equal to"),
        ({**VERBOSE, "logo": "javascript:alert(1)"}, "logo: must be an http or https URL"),
        ({**VERBOSE, "favicon": "https://u:p@example.com/f.ico"}, "favicon: must not carry a user name or password"),
        ({**VERBOSE, "logo": "https://exa mple.com/l.png"}, "logo: must not contain spaces or control characters"),
        ({**VERBOSE, "logo": "https://a;b.example/l.png"}, "logo: must name a host"),
        ({**VERBOSE, "videoUrl": "https://example.com:99999/v.mp4"}, "videoUrl: is not a valid URL"),
        (
            {"name": "video-summary", "videoUrl": "https://x.example/v.mp4", "audioUrl": "https://x.example/a.mp3"},
            "give videoUrl or audioUrl, not both",
        ),
        ({**VERBOSE, "readOnly": "yes"}, "readOnly: Input should be a valid boolean"),
        ({**VERBOSE, "disableSummaryURLAuthentication": True}, "disableSummaryURLAuthentication: is not supported"),
    ],
)
async def test_bad_requests_get_400_saying_what_is_wrong(tmp_path: Path, body: dict[str, Any], expected: str) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        response = await engine.client.post(
            f"/v1/conversations/{conversation_id}/experiences", json=body, headers=engine.headers
        )
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("invalid request: ")
        assert expected in response.json()["message"]


async def test_the_api_needs_a_token_a_conversation_and_a_json_object(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        path = f"/v1/conversations/{conversation_id}/experiences"
        anonymous = await engine.client.post(path, json={"name": "verbose-text-summary"})
        assert anonymous.status_code == 401
        assert anonymous.json() == {"message": "Token validation failed for provided token."}
        unknown = await engine.client.post(
            "/v1/conversations/1234567890123456/experiences",
            json={"name": "verbose-text-summary"},
            headers=engine.headers,
        )
        assert unknown.status_code == 404
        assert unknown.json() == {"message": "The conversationId is either invalid or does not exist."}
        not_json = await engine.client.post(path, content=b"{name:", headers=engine.headers)
        assert (not_json.status_code, not_json.json()) == (400, {"message": "the request body is not valid JSON"})
        a_list = await engine.client.post(path, json=["verbose-text-summary"], headers=engine.headers)
        assert a_list.json() == {"message": "invalid request: the body must be a JSON object"}
        # Fields Symbl documents but a self-hosted page has no use for are accepted.
        accepted = await engine.client.post(
            path,
            json={"name": "verbose-text-summary", "readOnly": True, "enableCustomDomain": True, "somethingNew": 1},
            headers=engine.headers,
        )
        assert accepted.status_code == 200


async def test_what_people_wrote_is_shown_as_text_never_as_markup(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        hostile = [
            {
                "payload": {"content": "<script>alert('x')</script> I will send <b>the deck</b>."},
                "from": {"name": "<img src=x onerror=alert(1)>", "userId": "x@example.com"},
                "duration": {"startTime": "2026-11-23T16:00:00Z", "endTime": "2026-11-23T16:00:04Z"},
            }
        ]
        conversation_id = await meeting(engine, hostile)
        html = (await engine.client.get(page_path((await experience(engine, conversation_id))["url"]))).text
        assert "<script>alert" not in html and "<b>the deck</b>" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_symbls_tuning_parameters(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        conversation_id = await meeting(engine)
        path = page_path((await experience(engine, conversation_id))["url"])

        def topics_of(html: str) -> list[str]:
            return re.findall(r'data-topic-messages="[^"]*">([^<]+)<', html)

        by_score = (await engine.client.get(path)).text
        assert topics_of(by_score) == ["discount", "pricing", "launch"]  # scores 0.9, 0.8, 0.7
        by_position = (await engine.client.get(path, params={"topics.orderBy": "position"})).text
        assert topics_of(by_position) == ["launch", "pricing", "discount"]  # first said at 0:00, 0:06, 0:10
        assert "Mike will fix" in by_score
        strict = (await engine.client.get(path, params={"insights.minScore": "0.85"})).text
        assert "Mike will fix" not in strict and "Did the pricing page go live" in strict  # 0.8 < 0.85 <= 0.9
        no_topics = (await engine.client.get(path, params={"topics.enabled": "false"})).text
        assert 'id="topics-heading"' not in no_topics and 'id="topics-chart"' not in no_topics
        wrong = await engine.client.get(path, params={"topics.orderBy": "alphabet"})
        assert wrong.status_code == 400 and "topics.orderBy" in wrong.json()["message"]


async def test_a_conversation_still_being_processed_says_so(tmp_path: Path) -> None:
    gate = Gate()
    analyzer = FakeAnalyzer()
    async with running_engine(engine_settings(tmp_path), analyzer=analyzer) as engine:
        conversation_id = await meeting(engine, TEXT_MESSAGES)
        path = page_path((await experience(engine, conversation_id))["url"])
        assert "still being processed" not in (await engine.client.get(path)).text
        analyzer.gate = gate
        appended = await engine.submit_text(TEXT_MESSAGES, conversation_id)
        assert await asyncio.to_thread(gate.entered.wait, 10)
        try:
            assert "still being processed" in (await engine.client.get(path)).text
        finally:
            gate.opened.set()
        await engine.wait_for_job(appended["jobId"])
        assert "still being processed" not in (await engine.client.get(path)).text


async def test_assets_are_served_from_the_package_and_cached_by_version(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path), analyzer=MeetingAnalyzer()) as engine:
        html = (await engine.client.get(page_path((await experience(engine, await meeting(engine)))["url"]))).text
        stylesheet = re.search(r'href="assets/(page\.css\?v=[0-9a-f]+)"', html)
        assert stylesheet is not None
        css = await engine.client.get(f"/experiences/assets/{stylesheet.group(1)}")
        assert css.status_code == 200
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "--surface" in css.text
        stale = await engine.client.get("/experiences/assets/page.js?v=0000")
        assert stale.headers["cache-control"] == "no-cache"
        assert stale.headers["content-type"] == "text/javascript; charset=utf-8"
        missing = await engine.client.get("/experiences/assets/secrets.txt")
        assert missing.status_code == 404
        assert missing.json() == {"message": "no such asset: secrets.txt"}
