"""PII redaction: what the redactor finds, how it replaces it, and that a redacted job stores and serves nothing else.

The recall figures come from ``parley_devtools.eval_redaction`` on generated, labelled sentences; these tests check
behaviour on small cases: each kind found, look-alikes left alone, word timings kept, the option's validation, and
the job path from request to stored messages, insights, transcripts and kept media.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from parley_engine.conversation import Speaker, Utterance, Word
from parley_engine.identifiers import message_id
from parley_engine.media_store import KeptMedia
from parley_engine.redaction.options import PiiType, RedactionOptions
from parley_engine.redaction.redactor import Redactor
from parley_engine.redaction.words import Finding, Substitution, redacted_spans, redacted_utterance
from parley_engine.speech.media import WHISPER_SAMPLE_RATE, decode_audio
from parley_engine.speech.options import SpeechOptions

from tests.support.engine import engine_settings, running_engine


@pytest.fixture(scope="module")
def redactor() -> Iterator[Redactor]:
    yield Redactor()


def found(redactor: Redactor, text: str, kinds: frozenset[PiiType] = frozenset(PiiType)) -> list[tuple[str, str]]:
    return [(text[f.start : f.end], f.kind.value) for f in redactor.find([text], kinds)[0]]


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("You can reach me on 415-555-2671 after three.", "415-555-2671", "PHONE_NUMBER"),
        ("Send it to dana.whitfield@example.org please.", "dana.whitfield@example.org", "EMAIL_ADDRESS"),
        ("The card is 4111 1111 1111 1111, expiry March.", "4111 1111 1111 1111", "CREDIT_CARD_NUMBER"),
        # Mastercard's 2-series, which Presidio's own card patterns do not know.
        ("Charge it to 2221000000000009 today.", "2221000000000009", "CREDIT_CARD_NUMBER"),
        ("My social security number is 536-22-8726.", "536-22-8726", "US_SOCIAL_SECURITY_NUMBER"),
        ("The refund goes to GB82 WEST 1234 5698 7654 32.", "GB82 WEST 1234 5698 7654 32", "IBAN"),
        ("She was born on July 21st, 1986 in Ohio.", "July 21st, 1986", "DATE_OF_BIRTH"),
        ("Ship it to 221 Baker Street, Apt 4, Springfield.", "221 Baker Street, Apt 4, Springfield", "ADDRESS"),
        ("The VPN gateway is 10.20.30.40 now.", "10.20.30.40", "IP_ADDRESS"),
        ("I talked to Margaret Thompson yesterday.", "Margaret Thompson", "PERSON"),
        # Identifiers read out and written down by speech-to-text: the words before them say what they are.
        ("My passport number is 889-1814-09 and it expires in June.", "889-1814-09", "PASSPORT_NUMBER"),
        ("The server logs show requests from 10226-222.74 at midnight.", "10226-222.74", "IP_ADDRESS"),
        ("DOB is 720 slash 1991, the member number is on the card.", "720 slash 1991", "DATE_OF_BIRTH"),
        ("Our VPN gateway is at 57243103.0, can you allow it?", "57243103.0", "IP_ADDRESS"),
        # The words that name them misheard ("DOB" as "DAB", "ITIN" as "item"): a whole date in digits old enough
        # to be a birth date, and nine digits, are still what they look like.
        ("DAB is 814 slash 1973 and the member number is on the card.", "814 slash 1973", "DATE_OF_BIRTH"),
        ("Her date of both is 7/20/1991, I think.", "7/20/1991", "DATE_OF_BIRTH"),
        ("His text said the item is 952-758124.", "952-758124", "US_SOCIAL_SECURITY_NUMBER"),
        ("DAB is 817-1977 and the member number is on the card.", "817-1977", "DATE_OF_BIRTH"),
        ("Her number changed. It's now 450, 613, 6555.", "450, 613, 6555", "PHONE_NUMBER"),
        ("The Abin is del aware 89-370-400-4405-320-1300", "89-370-400-4405-320-1300", "IBAN"),
        ("The gateway moved to 10 dot 20 dot 30 dot 40 last night.", "10 dot 20 dot 30 dot 40", "IP_ADDRESS"),
        # The words that name a number said after it, in the same sentence.
        ("It's 889-1814-09, that's the passport.", "889-1814-09", "PASSPORT_NUMBER"),
        ("July 21st, 1986 is when I was born.", "July 21st, 1986", "DATE_OF_BIRTH"),
        # Addresses as speech-to-text breaks them up: the house number merged, split or run into the street.
        ("The package was returned from 5959267 Devon Street West.", "5959267 Devon Street West.", "ADDRESS"),
        ("It was returned from 717a8 Wressle Road.", "717a8 Wressle Road.", "ADDRESS"),
        (
            "The delivery addresses 3807-41235 honey succulent suite 100.",
            "3807-41235 honey succulent suite 100",
            "ADDRESS",
        ),
        ("The delivery addresses 9,32543 for Farrar Parade.", "9,32543 for Farrar Parade.", "ADDRESS"),
    ],
)
def test_each_kind_is_found(redactor: Redactor, text: str, value: str, kind: str) -> None:
    assert (value, kind) in found(redactor, text)


@pytest.mark.parametrize(
    "text",
    [
        # Sixteen digits failing the Luhn check are not a card; meeting dates and times are not dates of birth.
        "The order number is 4111 1111 1111 1112.",
        "Let's meet on Friday, March 3rd at 10 am to review the budget.",
        "We shipped 1500 units in 2024 and expect 2000 next year.",
        "Revenue was 1,500,000 dollars, about 2500000 with the renewals.",
        # A number before a place is not its house number when it counts something or is a year.
        "We opened 3 offices in 2025 and met 250 customers at the fair.",
        # The names of the identifiers are not organisations.
        "What is your SSN and your DOB?",
        # A recent whole date is a deadline or a delivery, not a birth date; eight digits are not nine.
        "The contract was signed on 3/14/2024 and renews on 3/14/2027.",
        "The ticket is 41873727 in the queue.",
        # "point" reads a version or a decimal: not an IP address, and not a street ("Harbour Point").
        "We upgraded to version 3 point 5 point 2 point 1 on Monday.",
    ],
)
def test_look_alikes_are_left_alone(redactor: Redactor, text: str) -> None:
    assert found(redactor, text) == []


def test_only_the_asked_kinds_are_redacted(redactor: Redactor) -> None:
    text = "Call Margaret Thompson on 415-555-2671."
    assert found(redactor, text, frozenset({PiiType.PHONE_NUMBER})) == [("415-555-2671", "PHONE_NUMBER")]


def test_tags_replace_values_and_hashes_follow_the_same_value(redactor: Redactor) -> None:
    utterances = [
        Utterance(id="1", text="Please call Margaret Thompson on 415-555-2671."),
        Utterance(id="2", text="Margaret Thompson prefers e-mail to calls."),
    ]
    tagged = redactor.redact(utterances, RedactionOptions(enabled=True), hash_key=b"k")
    assert tagged[0].text == "Please call [PERSON] on [PHONE_NUMBER]."

    hashed = redactor.redact(utterances, RedactionOptions(enabled=True, substitution="hash"), hash_key=b"k")
    first, second = hashed[0].text.split()[2], hashed[1].text.split()[0]
    assert first.startswith("[PERSON_") and first == second
    other_key = redactor.redact(utterances, RedactionOptions(enabled=True, substitution="hash"), hash_key=b"other")
    assert other_key[0].text.split()[2] != first
    assert redactor.redact(utterances, RedactionOptions(enabled=False), hash_key=b"k") == utterances


def test_a_redacted_speech_utterance_keeps_one_timed_word_per_value() -> None:
    words = ["My", "number", "is", "415", "555", "2671,", "thanks."]
    utterance = Utterance(
        id="1",
        text=" ".join(words),
        words=[Word(word=w, start_offset=i * 0.5, end_offset=i * 0.5 + 0.4, score=0.9) for i, w in enumerate(words)],
    )
    start = utterance.text.index("415")
    finding = Finding(start, start + len("415 555 2671"), PiiType.PHONE_NUMBER, 0.9)
    redacted = redacted_utterance(utterance, [finding], Substitution(RedactionOptions(enabled=True), b"k"))

    assert redacted.text == "My number is [PHONE_NUMBER], thanks."
    assert [w.word for w in redacted.words or []] == ["My", "number", "is", "[PHONE_NUMBER]", "thanks."]
    tag = (redacted.words or [])[3]
    assert (tag.start_offset, tag.end_offset) == (1.5, 2.9)
    assert redacted_spans(utterance, redacted) == [(1.5, 2.9)]


def test_the_option_reads_either_spelling_and_refuses_unknown_kinds() -> None:
    options = RedactionOptions.model_validate({"enabled": True, "entityTypes": ["phone_number", "PERSON"]})
    assert options.kinds == {PiiType.PHONE_NUMBER, PiiType.PERSON}
    assert RedactionOptions(enabled=True).kinds == set(PiiType)
    with pytest.raises(ValueError, match=r"entityTypes|entity_types"):
        RedactionOptions.model_validate({"enabled": True, "entityTypes": ["SHOE_SIZE"]})


# Through the engine: request → job → stored and served


MESSAGES = [
    {"payload": {"content": "Hi, this is Margaret Thompson, call me on 415-555-2671."}, "from": {"name": "Ann"}},
    {"payload": {"content": "My card is 4111 1111 1111 1111, can you charge it?"}, "from": {"name": "Bob"}},
]


async def test_a_redacted_text_job_stores_and_serves_only_redacted_text(tmp_path: Path, redactor: Redactor) -> None:
    async with running_engine(engine_settings(tmp_path), redactor=redactor) as engine:
        response = await engine.client.post(
            "/v1/process/text",
            json={"messages": MESSAGES, "redaction": {"enabled": True}},
            headers=engine.headers,
        )
        assert response.status_code == 200, response.text
        job = await engine.wait_for_job(response.json()["jobId"])
        assert job["status"] == "completed"
        conversation = response.json()["conversationId"]

        messages = await engine.client.get(f"/v1/conversations/{conversation}/messages", headers=engine.headers)
        texts = [m["text"] for m in messages.json()["messages"]]
        assert texts == [
            "Hi, this is [PERSON], call me on [PHONE_NUMBER].",
            "My card is [CREDIT_CARD_NUMBER], can you charge it?",
        ]
        transcript = await engine.client.post(
            f"/v1/conversations/{conversation}/transcript",
            json={"contentType": "text/markdown"},
            headers=engine.headers,
        )
        # Everything served for the conversation, in every body: no value survives.
        bodies = [transcript.text]
        for path in ("messages", "questions", "action-items", "topics", "summary", "entities"):
            bodies.append(
                (await engine.client.get(f"/v1/conversations/{conversation}/{path}", headers=engine.headers)).text
            )
        # ("4111 1111", not "4111": four digits alone turn up in the bodies' numeric ids now and then.)
        for secret in ("Margaret", "Thompson", "415-555-2671", "4111 1111"):
            assert all(secret not in body for body in bodies), secret

        # Appended messages are redacted too: the option belongs to the conversation.
        appended = await engine.client.put(
            f"/v1/process/text/{conversation}",
            json={"messages": [{"payload": {"content": "Or e-mail margaret@example.org."}}]},
            headers=engine.headers,
        )
        await engine.wait_for_job(appended.json()["jobId"])
        messages = await engine.client.get(f"/v1/conversations/{conversation}/messages", headers=engine.headers)
        assert messages.json()["messages"][-1]["text"] == "Or e-mail [EMAIL_ADDRESS]."


@pytest.mark.parametrize(
    ("redaction", "message"),
    [
        ({"enabled": True, "entityTypes": ["SHOE_SIZE"]}, "entityTypes"),
        ({"enabled": True, "substitution": "stars"}, "substitution"),
        ({"enabled": "sometimes"}, "enabled"),
        ({"enabled": True, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_redaction_option_is_a_400_that_names_it(
    tmp_path: Path, redaction: dict[str, object], message: str
) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        response = await engine.client.post(
            "/v1/process/text", json={"messages": MESSAGES, "redaction": redaction}, headers=engine.headers
        )
        assert response.status_code == 400
        assert "redaction" in response.json()["message"] and message in response.json()["message"]


@dataclass
class ScriptedRecognizer:
    """Says the given sentences one after the other, each word half a second long, whatever the file holds."""

    sentences: list[str] = field(default_factory=list)

    def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int, id_prefix: str
    ) -> list[Utterance]:
        utterances, clock = [], 0.0
        for n, sentence in enumerate(self.sentences):
            words = []
            for word in sentence.split():
                words.append(Word(word=word, start_offset=clock, end_offset=clock + 0.45, score=0.9))
                clock += 0.5
            utterances.append(
                Utterance(
                    id=message_id(id_prefix, first_message_index + n),
                    text=sentence,
                    speaker=Speaker(name="Speaker 1"),
                    start_offset=words[0].start_offset,
                    end_offset=words[-1].end_offset,
                    words=words,
                )
            )
        return utterances


def tone_wav(path: Path, seconds: float) -> None:
    """A steady 440 Hz tone as 16 kHz WAV (ffmpeg-free: written by the standard library)."""
    import wave

    samples = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * WHISPER_SAMPLE_RATE)) / WHISPER_SAMPLE_RATE)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(WHISPER_SAMPLE_RATE)
        file.writeframes((samples * 32767).astype("<i2").tobytes())


async def test_the_option_travels_in_the_query_string_of_a_file_upload(tmp_path: Path, redactor: Redactor) -> None:
    recognizer = ScriptedRecognizer(["Please call 415-555-2671 tomorrow."])
    async with running_engine(engine_settings(tmp_path), recognizer=recognizer, redactor=redactor) as engine:  # type: ignore[arg-type]
        response = await engine.client.post(
            "/v1/process/audio",
            params={"redaction": json.dumps({"enabled": True, "entityTypes": ["PHONE_NUMBER"]})},
            content=b"RIFF-audio-bytes",
            headers={**engine.headers, "Content-Type": "audio/wav"},
        )
        assert response.status_code == 200, response.text
        await engine.wait_for_job(response.json()["jobId"])
        conversation = response.json()["conversationId"]
        messages = await engine.client.get(
            f"/v1/conversations/{conversation}/messages", params={"verbose": "true"}, headers=engine.headers
        )
        [message] = messages.json()["messages"]
        assert message["text"] == "Please call [PHONE_NUMBER] tomorrow."
        assert [w["word"] for w in message["words"]] == ["Please", "call", "[PHONE_NUMBER]", "tomorrow."]
        # Redacted without redactAudio: the unredacted recording is not kept.
        assert KeptMedia(engine_settings(tmp_path).kept_media_dir).path(conversation) is None


async def test_redact_audio_keeps_the_recording_with_the_redacted_words_silenced(
    tmp_path: Path, redactor: Redactor
) -> None:
    media = tmp_path / "call.wav"
    tone_wav(media, 4.0)
    settings = engine_settings(tmp_path / "engine", max_upload_bytes=1024 * 1024)
    # "415-555-2671" is the 4th word: 1.5 s to 1.95 s.
    recognizer = ScriptedRecognizer(["My number is 415-555-2671 okay thanks bye now"])
    async with running_engine(settings, recognizer=recognizer, redactor=redactor) as engine:  # type: ignore[arg-type]
        response = await engine.client.post(
            "/v1/process/audio",
            params={"redaction": json.dumps({"enabled": True, "redactAudio": True})},
            content=media.read_bytes(),
            headers={**engine.headers, "Content-Type": "audio/wav"},
        )
        await engine.wait_for_job(response.json()["jobId"])
        conversation = response.json()["conversationId"]
        kept = KeptMedia(settings.kept_media_dir).path(conversation)
        assert kept is not None and kept.suffix == ".m4a"
        audio = decode_audio(kept).mono()

        def loudness(start: float, end: float) -> float:
            part = audio[int(start * WHISPER_SAMPLE_RATE) : int(end * WHISPER_SAMPLE_RATE)]
            return float(np.sqrt(np.mean(part**2)))

        assert loudness(1.5, 1.95) < 0.001  # the number: silent
        assert loudness(0.2, 1.2) > 0.2 and loudness(2.3, 3.8) > 0.2  # the rest: the tone as it was
        # Nothing of the job's upload is left behind, and deleting the conversation deletes its media.
        assert list(settings.uploads_dir.iterdir()) == []
        await engine.client.delete(f"/v1/conversations/{conversation}", headers=engine.headers)
        assert KeptMedia(settings.kept_media_dir).path(conversation) is None


async def test_media_of_an_unredacted_conversation_is_kept_for_its_page(tmp_path: Path) -> None:
    media = tmp_path / "call.wav"
    tone_wav(media, 1.0)
    settings = engine_settings(tmp_path / "engine", max_upload_bytes=1024 * 1024)
    async with running_engine(settings) as engine:
        response = await engine.client.post(
            "/v1/process/audio", content=media.read_bytes(), headers={**engine.headers, "Content-Type": "audio/wav"}
        )
        await engine.wait_for_job(response.json()["jobId"])
        kept = KeptMedia(settings.kept_media_dir).path(response.json()["conversationId"])
        assert kept is not None and kept.read_bytes() == media.read_bytes()

    async with running_engine(
        engine_settings(tmp_path / "other", max_upload_bytes=1024 * 1024, keep_media=False)
    ) as engine:
        response = await engine.client.post(
            "/v1/process/audio", content=media.read_bytes(), headers={**engine.headers, "Content-Type": "audio/wav"}
        )
        await engine.wait_for_job(response.json()["jobId"])
        assert not (tmp_path / "other" / "conversation-media").exists()
