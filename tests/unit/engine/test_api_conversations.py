"""The Conversation API: Symbl's shapes, query-parameter stripping, updates, transcripts and deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parley_engine.transcript import markdown_transcript, srt_timestamp, srt_transcript

from tests.support.engine import TEXT_MESSAGES, RunningEngine, engine_settings, running_engine

NOT_FOUND = {"message": "The conversationId is either invalid or does not exist."}


async def completed_text(engine: RunningEngine, messages: list[dict[str, Any]] = TEXT_MESSAGES) -> str:
    body = await engine.submit_text(messages)
    await engine.wait_for_job(body["jobId"])
    return str(body["conversationId"])


async def test_reads_have_symbl_shapes_and_strip_what_was_not_asked(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        cid = await completed_text(engine)
        base = f"/v1/conversations/{cid}"

        async def get(path: str) -> Any:
            response = await engine.client.get(base + path, headers=engine.headers)
            assert response.status_code == 200, (path, response.text)
            return response.json()

        conversation = await get("")
        assert set(conversation) == {"id", "type", "name", "startTime", "endTime", "members", "metadata"}
        assert conversation["id"] == cid and conversation["metadata"] == {}
        assert sorted(m["name"] for m in conversation["members"]) == ["Mike", "Natalia"]

        plain = (await get("/messages"))["messages"]
        assert len(plain) == 2
        assert all("sentiment" not in m and "words" not in m for m in plain)
        assert all("sentiment" in m and "words" not in m for m in (await get("/messages?sentiment=true"))["messages"])
        assert all("words" in m and "sentiment" not in m for m in (await get("/messages?verbose=true"))["messages"])

        topics = (await get("/topics"))["topics"]
        assert "sentiment" not in topics[0] and "parentRefs" not in topics[0]
        full = (await get("/topics?sentiment=true&parentRefs=true"))["topics"][0]
        assert full["parentRefs"] == [] and full["sentiment"]["suggested"] == "neutral"

        questions = (await get("/questions"))["questions"]
        assert [q["text"] for q in questions] == ["Hi Mike, shall we review the deck?"]
        assert (await get("/action-items"))["actionItems"][0]["type"] == "action_item"
        assert (await get("/follow-ups"))["followUps"][0]["type"] == "follow_up"
        assert [i["type"] for i in (await get("/insights"))["insights"]] == ["question", "action_item", "follow_up"]
        assert (await get("/entities"))["entities"][0]["value"] == "Ann"
        analytics = await get("/analytics")
        assert set(analytics) == {"metrics", "members"}
        assert (await get("/summary"))["summary"][0]["text"] == "2 messages"
        trackers = await get("/trackers-detected")
        assert isinstance(trackers, list) and trackers[0]["name"] == "Deck"
        assert len((await get("/members"))["members"]) == 2


async def test_listing_filters_orders_and_pages(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        old = await completed_text(engine)  # starts 2020-07-21
        later = [{**TEXT_MESSAGES[0], "duration": {"startTime": "2021-01-01T00:00:00Z"}}]
        newer = await completed_text(engine, later)

        async def ids(query: str) -> list[str]:
            response = await engine.client.get(f"/v1/conversations{query}", headers=engine.headers)
            assert response.status_code == 200, response.text
            return [c["id"] for c in response.json()["conversations"]]

        assert await ids("") == [newer, old]
        assert await ids("?order=asc") == [old, newer]
        assert await ids("?limit=1") == [newer]
        assert await ids("?limit=1&offset=1") == [old]
        assert await ids("?startTime=2020-12-01T00:00:00Z") == [newer]
        assert await ids("?endTime=2020-12-01T00:00:00Z") == [old]


async def test_metadata_members_and_deletion(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        cid = await completed_text(engine)
        base = f"/v1/conversations/{cid}"
        client, headers = engine.client, engine.headers

        updated = await client.put(base, json={"metadata": {"crm": "42"}}, headers=headers)
        assert updated.json() == {"id": cid, "metadata": {"crm": "42"}}
        assert (await client.get(base, headers=headers)).json()["metadata"] == {"crm": "42"}
        assert (await client.put(base, json={"metadata": "x"}, headers=headers)).status_code == 400

        members = (await client.get(f"{base}/members", headers=headers)).json()["members"]
        mike = next(m for m in members if m["name"] == "Mike")
        renamed = await client.put(
            f"{base}/members/{mike['id']}",
            json={"id": mike["id"], "name": "Michael", "email": "michael@example.com"},
            headers=headers,
        )
        assert renamed.status_code == 200
        assert renamed.json() == {
            "message": f"Member with id: {mike['id']} updated successfully! The update should be reflected in all "
            "messages and insights along with this conversation"
        }
        members = (await client.get(f"{base}/members", headers=headers)).json()["members"]
        assert {"id": mike["id"], "name": "Michael", "email": "michael@example.com"} in members
        messages = (await client.get(f"{base}/messages", headers=headers)).json()["messages"]
        assert [m["from"]["name"] for m in messages] == ["Natalia", "Michael"]
        # The rename also reaches the utterances, so the next job's re-analysis keeps it.
        appended = await engine.submit_text([{"payload": {"content": "Thanks."}, "from": {"name": "Natalia"}}], cid)
        await engine.wait_for_job(appended["jobId"])
        messages = (await client.get(f"{base}/messages", headers=headers)).json()["messages"]
        assert [m["from"]["name"] for m in messages] == ["Natalia", "Michael", "Natalia"]
        unknown = await client.put(f"{base}/members/nobody", json={"id": "nobody", "name": "X"}, headers=headers)
        assert unknown.status_code == 404

        deleted = await client.delete(base, headers=headers)
        assert deleted.json() == {"message": "successfully deleted the conversation"}
        for path in ("", "/messages", "/topics", "/summary"):
            gone = await client.get(base + path, headers=headers)
            assert gone.status_code == 404
            assert gone.json() == NOT_FOUND
        assert (await client.delete(base, headers=headers)).json() == NOT_FOUND
        append = await client.put(f"/v1/process/text/{cid}", json={"messages": TEXT_MESSAGES}, headers=headers)
        assert append.status_code == 404
        assert (await client.get("/v1/conversations", headers=headers)).json() == {"conversations": []}


async def test_summary_refresh_regenerates(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        cid = await completed_text(engine)
        calls = len(engine.analyzer.calls)
        refreshed = await engine.client.get(f"/v1/conversations/{cid}/summary?refresh=true", headers=engine.headers)
        assert refreshed.json()["summary"][0]["text"] == "2 messages"
        assert len(engine.analyzer.calls) == calls + 1
        assert engine.analyzer.calls[-1][2].enable_summary is True


async def test_transcripts_in_markdown_and_srt(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        messages: list[dict[str, Any]] = [
            *TEXT_MESSAGES,
            {**TEXT_MESSAGES[1], "payload": {"content": "And the notes."}, "duration": None},
        ]
        cid = await completed_text(engine, messages)
        url = f"/v1/conversations/{cid}/transcript"
        markdown = await engine.client.post(
            url,
            json={"contentType": "text/markdown", "createParagraphs": True, "showSpeakerSeparation": True},
            headers=engine.headers,
        )
        assert markdown.json() == {
            "transcript": {
                "payload": "**Natalia**: Hi Mike, shall we review the deck?\n\n"
                "**Mike**: Sure, I will send it tomorrow. And the notes.\n",
                "contentType": "text/markdown",
            }
        }
        srt = await engine.client.post(
            url, json={"contentType": "text/srt", "showSpeakerSeparation": True}, headers=engine.headers
        )
        assert srt.json()["transcript"] == {
            "payload": "1\n00:00:00,000 --> 00:00:02,000\nNatalia: Hi Mike, shall we review the deck?\n\n"
            "2\n00:00:02,990 --> 00:00:06,490\nMike: Sure, I will send it tomorrow.\n\n"
            "3\n00:00:06,490 --> 00:00:07,690\nMike: And the notes.\n",
            "contentType": "text/srt",
        }
        highlighted = await engine.client.post(
            url,
            json={"contentType": "text/markdown", "phrases": {"highlightAllKeyPhrases": True}},
            headers=engine.headers,
        )
        assert highlighted.json()["transcript"]["payload"].startswith("**Hi** Mike")
        bad = await engine.client.post(url, json={"contentType": "text/html"}, headers=engine.headers)
        assert bad.status_code == 400
        assert "contentType" in bad.json()["message"]


def test_markdown_without_paragraphs_or_speakers_and_srt_timestamps() -> None:
    messages = [
        {"id": "1", "text": "One.", "from": {"name": "Ann"}},
        {"id": "2", "text": "Two.", "from": {"name": "Ann"}},
    ]
    assert markdown_transcript(messages, create_paragraphs=False, show_speaker_separation=False) == "One.\n\nTwo.\n"
    assert markdown_transcript(messages, create_paragraphs=False, show_speaker_separation=True) == (
        "**Ann**: One.\n\n**Ann**: Two.\n"
    )
    assert srt_timestamp(3725.0409) == "01:02:05,041"
    assert srt_transcript([], show_speaker_separation=True) == ""
