"""The official generated Symbl client (``symbl-rest`` 1.0.14), unchanged, against the engine running as a process.

Every call goes through the client's own API classes and models, so a test fails when the engine deviates from
what Symbl's published contract (and therefore this client) expects: a path, a status code, a field name or type.
Where the client has no method for an endpoint the engine serves (conversation list and delete, trackers-detected),
the test says so and uses httpx with the same token.

Media are synthesized at run time with flite; the URL endpoints download them from a small HTTP server on
127.0.0.1 started here.
"""

from __future__ import annotations

import functools
import http.server
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import symbl_rest
from symbl_rest.rest import ApiException

from parley_cli.local_stack import LocalStack, ServiceProcess
from parley_devtools.speech_samples import flite_available, make_video, synthesize_wav

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not flite_available(), reason="flite is needed to synthesize the test speech"),
]

APP_ID = "parley-dev"
APP_SECRET = "parley-dev-secret"
UNKNOWN_CONVERSATION_ID = "1234567890123456"
JOB_TIMEOUT_SECONDS = 60.0

AUDIO_SENTENCE = "Please send the budget report to the finance team by Friday."
AUDIO_WORDS = ("budget", "report", "finance", "friday")
APPENDED_AUDIO_SENTENCE = "The marketing meeting is scheduled for Tuesday morning."
APPENDED_AUDIO_WORDS = ("marketing", "meeting", "tuesday", "morning")
VIDEO_SENTENCE = "We will review the contract with the customer next week."
VIDEO_WORDS = ("review", "contract", "customer", "week")

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api_client(host: str, token: str) -> symbl_rest.ApiClient:
    """A client configured the way the Symbl SDK configures it: ``x-api-key`` carrying the access token.

    ``Configuration()`` is a shallow copy of one process-wide default, so its ``api_key`` dict is shared by every
    configuration: assigning a new dict (instead of setting a key) keeps two clients from sharing a token.
    """
    configuration = symbl_rest.Configuration()
    configuration.host = host
    configuration.api_key = {"x-api-key": token}
    return symbl_rest.ApiClient(configuration)


def text_message(content: str, name: str, user_id: str) -> symbl_rest.AsyncMessagesFieldInner:
    return symbl_rest.AsyncMessagesFieldInner(
        payload=symbl_rest.TextPayload(content=content, content_type="text/plain"),
        _from=symbl_rest.FromPayload(name=name, user_id=user_id),
    )


def api_error(call: Callable[[], object]) -> ApiException:
    """The ``ApiException`` the client raises for ``call``; fails the test when the call succeeds."""
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value


def recognised(transcript: str, words: tuple[str, ...]) -> list[str]:
    lowered = transcript.lower()
    return [word for word in words if word in lowered]


def wait_until(produce: Callable[[], T], done: Callable[[T], bool], *, timeout: float, what: str) -> T:
    """Poll ``produce`` until ``done`` holds; "not yet" is the expected answer for a while, not an error."""
    deadline = time.monotonic() + timeout
    while True:
        value = produce()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s; last value: {value!r}")
        time.sleep(0.25)


@dataclass
class Engine:
    """The running engine and an authenticated client for it."""

    service: ServiceProcess
    token: str
    client: symbl_rest.ApiClient

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def async_api(self) -> symbl_rest.AsyncApi:
        return symbl_rest.AsyncApi(self.client)

    @property
    def conversations(self) -> symbl_rest.ConversationsApi:
        return symbl_rest.ConversationsApi(self.client)

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """For the endpoints ``symbl-rest`` has no method for; same token, same header."""
        return httpx.request(method, self.url + path, headers={"x-api-key": self.token}, timeout=10.0, **kwargs)

    def wait_for_job(self, job_id: str) -> None:
        """Poll ``GET /v1/job/{jobId}`` through the client until the job completes (bounded)."""
        jobs = symbl_rest.JobsApi(self.client)
        job = wait_until(
            lambda: jobs.get_job_status(job_id),
            lambda job: job.status in ("completed", "failed"),
            timeout=JOB_TIMEOUT_SECONDS,
            what=f"job {job_id} finished",
        )
        assert job.id == job_id
        if job.status == "failed":
            # The client's JobResponse has no field for the engine's failure reason; read it directly.
            pytest.fail(f"job {job_id} failed: {self.http('GET', f'/v1/job/{job_id}').text}")
        assert job.status == "completed"

    def transcript(self, conversation_id: str) -> str:
        messages = self.conversations.get_messages_by_conversation_id(conversation_id).messages
        return " ".join(message.text for message in messages)


@pytest.fixture(scope="module")
def engine_process() -> Iterator[ServiceProcess]:
    with tempfile.TemporaryDirectory(prefix="parley-symbl-rest-") as scratch:
        stack = LocalStack(log_dir=Path(scratch) / "logs", env={"PARLEY_ENGINE_DATA_DIR": f"{scratch}/data"})
        # The URL tests serve media from a loopback server, which the engine refuses unless told otherwise.
        extra_env = {
            "PARLEY_APP_ID": APP_ID,
            "PARLEY_APP_SECRET": APP_SECRET,
            "PARLEY_ALLOW_PRIVATE_MEDIA_URLS": "true",
        }
        service = stack.start("engine", port=free_port(), extra_env=extra_env, timeout=120.0)
        try:
            yield service
        finally:
            stack.stop_all()


@pytest.fixture(scope="module")
def issued_token(engine_process: ServiceProcess) -> symbl_rest.Token:
    configuration = symbl_rest.Configuration()
    configuration.host = engine_process.url
    grant = symbl_rest.Grant(type="application", app_id=APP_ID, app_secret=APP_SECRET)
    token: symbl_rest.Token = symbl_rest.AuthenticationApi(symbl_rest.ApiClient(configuration)).generate_token(grant)
    return token


@pytest.fixture(scope="module")
def engine(engine_process: ServiceProcess, issued_token: symbl_rest.Token) -> Engine:
    return Engine(engine_process, issued_token.access_token, api_client(engine_process.url, issued_token.access_token))


@pytest.fixture(scope="module")
def media_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="parley-symbl-rest-media-") as scratch:
        folder = Path(scratch)
        synthesize_wav(AUDIO_SENTENCE, "slt", folder / "speech.wav")
        synthesize_wav(APPENDED_AUDIO_SENTENCE, "rms", folder / "appended.wav")
        synthesize_wav(VIDEO_SENTENCE, "slt", folder / "video-speech.wav")
        make_video(folder / "speech.mp4", wav_path=folder / "video-speech.wav")
        make_video(folder / "appended.mp4", wav_path=folder / "appended.wav")
        yield folder


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the test output is no place for access logs
        pass


@pytest.fixture(scope="module")
def media_url(media_dir: Path) -> Iterator[str]:
    """Base URL of a file server on 127.0.0.1 serving ``media_dir``; the engine downloads the URL inputs from it."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietFileHandler, directory=str(media_dir))
    )
    thread = threading.Thread(target=server.serve_forever, name="media-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass(frozen=True)
class TextConversation:
    conversation_id: str
    first_job_id: str
    appended_job_id: str


@pytest.fixture(scope="module")
def text_conversation(engine: Engine) -> TextConversation:
    """A text conversation made with ``add_text`` and extended with ``append_text``, both jobs completed."""
    body = symbl_rest.AsyncTextParameters(
        name="Budget review",
        messages=[
            text_message("Hello Ben, I will send the report by Friday.", "Ana", "ana@example.com"),
            text_message("Can you also review the budget for the marketing campaign?", "Ben", "ben@example.com"),
        ],
        detect_phrases=True,
        trackers=[{"name": "Money", "vocabulary": ["budget", "pricing"]}],
        entities=[symbl_rest.CustomEntities(custom_type="Deliverable", text="report")],
    )
    created = engine.async_api.add_text(body=body)
    engine.wait_for_job(created.job_id)
    appended = engine.async_api.append_text(
        created.conversation_id,
        body=symbl_rest.AsyncTextParameters(
            messages=[text_message("I will follow up with you on Monday about the contract.", "Ben", "ben@example.com")]
        ),
    )
    assert appended.conversation_id == created.conversation_id
    engine.wait_for_job(appended.job_id)
    return TextConversation(created.conversation_id, created.job_id, appended.job_id)


@pytest.fixture(scope="module")
def audio_conversation(engine: Engine, media_dir: Path) -> str:
    """An audio conversation uploaded as raw WAV bytes with ``add_audio``, then ``append_audio``."""
    created = engine.async_api.add_audio(
        (media_dir / "speech.wav").read_bytes(),
        "audio/wav",
        name="Audio upload",
        # Query-string options as the client writes them: a repeated list, Python booleans, a JSON string.
        custom_vocabulary=["budget", "finance"],
        language_code="en-US",
        detect_phrases=True,
        confidence_threshold=0.6,
        trackers='[{"name": "Money", "vocabulary": ["budget"]}]',
    )
    engine.wait_for_job(created.job_id)
    appended = engine.async_api.append_audio(
        (media_dir / "appended.wav").read_bytes(), "audio/wav", created.conversation_id
    )
    assert appended.conversation_id == created.conversation_id
    assert appended.job_id != created.job_id
    engine.wait_for_job(appended.job_id)
    conversation_id: str = created.conversation_id
    return conversation_id


# --- authentication -------------------------------------------------------------------------------------------


def test_generate_token_returns_a_jwt_and_the_same_token_again(
    engine_process: ServiceProcess, issued_token: symbl_rest.Token
) -> None:
    assert issued_token.access_token.count(".") == 2
    assert 0 < issued_token.expires_in <= 86400
    configuration = symbl_rest.Configuration()
    configuration.host = engine_process.url
    grant = symbl_rest.Grant(type="application", app_id=APP_ID, app_secret=APP_SECRET)
    again = symbl_rest.AuthenticationApi(symbl_rest.ApiClient(configuration)).generate_token(grant)
    assert again.access_token == issued_token.access_token
    assert again.expires_in <= issued_token.expires_in


def test_wrong_app_secret_is_refused_with_401(engine_process: ServiceProcess) -> None:
    configuration = symbl_rest.Configuration()
    configuration.host = engine_process.url
    grant = symbl_rest.Grant(type="application", app_id=APP_ID, app_secret="not-the-secret")
    error = api_error(lambda: symbl_rest.AuthenticationApi(symbl_rest.ApiClient(configuration)).generate_token(grant))
    assert error.status == 401


def test_wrong_token_gets_401_from_every_api(engine: Engine, text_conversation: TextConversation) -> None:
    stranger = api_client(engine.url, "not.a.token")
    conversation_id = text_conversation.conversation_id
    calls: dict[str, Callable[[], object]] = {
        "conversation": lambda: symbl_rest.ConversationsApi(stranger).get_conversation_by_conversation_id(
            conversation_id
        ),
        "messages": lambda: symbl_rest.ConversationsApi(stranger).get_messages_by_conversation_id(conversation_id),
        "job": lambda: symbl_rest.JobsApi(stranger).get_job_status(text_conversation.first_job_id),
        "add_text": lambda: symbl_rest.AsyncApi(stranger).add_text(
            body=symbl_rest.AsyncTextParameters(messages=[text_message("Hello.", "Ana", "ana@example.com")])
        ),
    }
    errors = {name: api_error(call) for name, call in calls.items()}
    assert {name: error.status for name, error in errors.items()} == dict.fromkeys(calls, 401)
    assert json.loads(errors["conversation"].body) == {"message": "Token validation failed for provided token."}


def test_unknown_conversation_gets_404(engine: Engine) -> None:
    conversations = engine.conversations
    assert api_error(lambda: conversations.get_conversation_by_conversation_id(UNKNOWN_CONVERSATION_ID)).status == 404
    assert api_error(lambda: conversations.get_messages_by_conversation_id(UNKNOWN_CONVERSATION_ID)).status == 404
    append = engine.async_api.append_text
    body = symbl_rest.AsyncTextParameters(messages=[text_message("Hello.", "Ana", "ana@example.com")])
    assert api_error(lambda: append(UNKNOWN_CONVERSATION_ID, body=body)).status == 404
    error = api_error(lambda: conversations.get_topics_by_conversation_id(UNKNOWN_CONVERSATION_ID))
    assert error.status == 404
    assert json.loads(error.body) == {"message": "The conversationId is either invalid or does not exist."}
    jobs = symbl_rest.JobsApi(engine.client)
    assert api_error(lambda: jobs.get_job_status("00000000-0000-4000-8000-000000000000")).status == 404


# --- Async API: text ------------------------------------------------------------------------------------------


def test_append_text_keeps_the_conversation_and_adds_its_messages(
    engine: Engine, text_conversation: TextConversation
) -> None:
    assert text_conversation.appended_job_id != text_conversation.first_job_id
    messages = engine.conversations.get_messages_by_conversation_id(text_conversation.conversation_id).messages
    assert [message.text for message in messages] == [
        "Hello Ben, I will send the report by Friday.",
        "Can you also review the budget for the marketing campaign?",
        "I will follow up with you on Monday about the contract.",
    ]
    assert [message._from.name for message in messages] == ["Ana", "Ben", "Ben"]
    assert {message.conversation_id for message in messages} == {text_conversation.conversation_id}
    assert all(isinstance(message.start_time, datetime) for message in messages)


# --- Conversation API -----------------------------------------------------------------------------------------


def test_conversation_data(engine: Engine, text_conversation: TextConversation) -> None:
    conversation = engine.conversations.get_conversation_by_conversation_id(text_conversation.conversation_id)
    assert conversation.id == text_conversation.conversation_id
    assert conversation.type == "meeting"
    assert conversation.name == "Budget review"
    assert isinstance(conversation.start_time, datetime)
    assert isinstance(conversation.end_time, datetime)
    assert conversation.end_time >= conversation.start_time
    assert {(member.name, member.email) for member in conversation.members} == {
        ("Ana", "ana@example.com"),
        ("Ben", "ben@example.com"),
    }


def test_messages_verbose_and_sentiment_only_when_asked(engine: Engine, text_conversation: TextConversation) -> None:
    conversations = engine.conversations
    plain = conversations.get_messages_by_conversation_id(text_conversation.conversation_id).messages
    assert all(message.words is None and message.sentiment is None for message in plain)
    detailed = conversations.get_messages_by_conversation_id(
        text_conversation.conversation_id, verbose=True, sentiment=True
    ).messages
    first = detailed[0]
    assert [word.word for word in first.words][:3] == ["Hello", "Ben,", "I"]
    assert all(isinstance(word.start_time, datetime) for word in first.words)
    assert all(message.sentiment.suggested in ("positive", "neutral", "negative") for message in detailed)
    assert all(-1.0 <= message.sentiment.polarity.score <= 1.0 for message in detailed)
    assert any(phrase.type == "action_phrase" and "report" in phrase.text for phrase in first.phrases)


def test_topics_with_sentiment_and_parent_refs(engine: Engine, text_conversation: TextConversation) -> None:
    conversation_id = text_conversation.conversation_id
    message_ids = {m.id for m in engine.conversations.get_messages_by_conversation_id(conversation_id).messages}
    plain = engine.conversations.get_topics_by_conversation_id(conversation_id).topics
    assert all(topic.sentiment is None and topic.parent_refs is None for topic in plain)
    topics_api = engine.conversations.get_topics_by_conversation_id
    topics = topics_api(conversation_id, sentiment=True, parent_refs=True).topics
    texts = " ".join(topic.text for topic in topics)
    assert recognised(texts, ("budget", "report", "marketing", "contract")), texts
    for topic in topics:
        assert topic.type == "topic"
        assert 0.0 <= topic.score <= 1.0
        assert set(topic.message_ids) <= message_ids
        assert topic.sentiment.suggested in ("positive", "neutral", "negative")
        assert isinstance(topic.parent_refs, list)
        assert all(ref.type == "topic" and ref.text in texts for ref in topic.parent_refs)


def test_questions(engine: Engine, text_conversation: TextConversation) -> None:
    questions = engine.conversations.get_questions_by_conversation_id(text_conversation.conversation_id).questions
    assert [question.text for question in questions] == ["Can you also review the budget for the marketing campaign?"]
    assert questions[0].type == "question"
    assert questions[0]._from.name == "Ben"
    assert questions[0]._from.user_id == "ben@example.com"


def test_action_item_has_assignee_and_due_date(engine: Engine, text_conversation: TextConversation) -> None:
    items = engine.conversations.get_action_items_by_conversation_id(text_conversation.conversation_id).action_items
    report = next(item for item in items if "send the report by Friday" in item.text)
    assert report.type == "action_item"
    assert report.assignee.name == "Ana"
    assert isinstance(report.due_by, datetime)
    assert report.due_by.weekday() == 4  # Friday
    assert report.definitive is True
    assert report._from.user_id == "ana@example.com"


def test_follow_up_from_the_appended_message(engine: Engine, text_conversation: TextConversation) -> None:
    follow_ups = engine.conversations.get_follow_ups_by_conversation_id(text_conversation.conversation_id).follow_ups
    monday = next(item for item in follow_ups if "follow up with you on Monday" in item.text)
    assert monday.type == "follow_up"
    assert monday._from.name == "Ben"
    assert isinstance(monday.due_by, datetime)
    assert monday.due_by.weekday() == 0  # Monday


def test_insights_combine_questions_action_items_and_follow_ups(
    engine: Engine, text_conversation: TextConversation
) -> None:
    insights = engine.conversations.get_insights_by_conversation_id(text_conversation.conversation_id).insights
    by_type = {(insight.type, insight.text) for insight in insights}
    assert ("question", "Can you also review the budget for the marketing campaign?") in by_type
    assert ("action_item", "Hello Ben, I will send the report by Friday.") in by_type
    assert ("follow_up", "I will follow up with you on Monday about the contract.") in by_type


def test_members(engine: Engine, text_conversation: TextConversation) -> None:
    members = engine.conversations.get_members_by_conversation_id(text_conversation.conversation_id).members
    assert sorted((member.name, member.email) for member in members) == [
        ("Ana", "ana@example.com"),
        ("Ben", "ben@example.com"),
    ]
    assert all(member.id for member in members)


def test_entities(engine: Engine, text_conversation: TextConversation) -> None:
    entities = engine.conversations.get_entities_by_conversation_id(text_conversation.conversation_id).entities
    found = {(entity.type, entity.text) for entity in entities}
    assert ("person", "Ben") in found
    assert ("date", "Friday") in found
    custom = next(entity for entity in entities if entity.type == "custom")
    assert (custom.custom_type, custom.text) == ("Deliverable", "report")
    friday = next(entity for entity in entities if entity.text == "Friday")
    assert datetime.fromisoformat(friday.value).weekday() == 4
    assert friday.message_refs[0]["text"] == "Hello Ben, I will send the report by Friday."


def test_analytics(engine: Engine, text_conversation: TextConversation) -> None:
    analytics = engine.conversations.get_analytics_by_conversation_id(text_conversation.conversation_id)
    assert {metric.type for metric in analytics.metrics} == {"total_silence", "total_talk_time", "total_overlap"}
    assert {member.name for member in analytics.members} == {"Ana", "Ben"}
    for member in analytics.members:
        assert member.talk_time.seconds > 0
        assert 0 < member.talk_time.percentage <= 100
        assert member.pace.wpm > 0
    assert sum(member.talk_time.percentage for member in analytics.members) == pytest.approx(100, abs=0.1)


def test_trackers_detected_without_client_method(engine: Engine, text_conversation: TextConversation) -> None:
    """``symbl-rest`` 1.0.14 has no method for ``GET /{id}/trackers-detected``; read it with httpx."""
    response = engine.http("GET", f"/v1/conversations/{text_conversation.conversation_id}/trackers-detected")
    assert response.status_code == 200
    trackers = response.json()
    assert isinstance(trackers, list)
    money = next(tracker for tracker in trackers if tracker["name"] == "Money")
    values = {match["value"].lower() for match in money["matches"]}
    assert "budget" in values
    assert all(match["type"] == "vocabulary" for match in money["matches"])


def test_trackers_through_the_client(engine: Engine, text_conversation: TextConversation) -> None:
    """The client's only tracker call is the deprecated ``GET /{id}/trackers`` (bare array of trackers)."""
    try:
        trackers = engine.conversations.get_trackers_by_conversation_id(text_conversation.conversation_id)
    except ApiException as error:
        refused: ApiException | None = error
    else:
        refused = None
    if refused is not None:
        pytest.fail(
            f"GET /v1/conversations/{{conversationId}}/trackers (symbl-rest get_trackers_by_conversation_id, the "
            f"deprecated form of trackers-detected) answered {refused.status} {refused.body!r}; expected 200 and "
            "the same bare array as /trackers-detected"
        )
    money = next(tracker for tracker in trackers if tracker.name == "Money")
    assert any(match.value.lower() == "budget" for match in money.matches)


def test_member_update_shows_in_members_and_messages(engine: Engine) -> None:
    created = engine.async_api.add_text(
        body=symbl_rest.AsyncTextParameters(
            messages=[
                text_message("Good morning, let's start the weekly sync.", "Cara", "cara@example.com"),
                text_message("Sounds good, I have two updates.", "Dev", "dev@example.com"),
            ]
        )
    )
    engine.wait_for_job(created.job_id)
    conversations = engine.conversations
    members = conversations.get_members_by_conversation_id(created.conversation_id).members
    cara = next(member for member in members if member.name == "Cara")
    answer = conversations.put_members_information_by_members_id(
        symbl_rest.PutMembersInformationPayload(id=cara.id, name="Cara Lopez", email="cara.lopez@example.com"),
        created.conversation_id,
        cara.id,
    )
    assert cara.id in answer.message
    members = conversations.get_members_by_conversation_id(created.conversation_id).members
    assert ("Cara Lopez", "cara.lopez@example.com") in {(member.name, member.email) for member in members}
    messages = conversations.get_messages_by_conversation_id(created.conversation_id).messages
    assert [message._from.name for message in messages] == ["Cara Lopez", "Dev"]


# --- Async API: audio and video -------------------------------------------------------------------------------


def test_add_and_append_audio_transcribes_both_files(engine: Engine, audio_conversation: str) -> None:
    messages = engine.conversations.get_messages_by_conversation_id(audio_conversation).messages
    transcript = " ".join(message.text for message in messages)
    assert len(recognised(transcript, AUDIO_WORDS)) >= 2, transcript
    assert len(recognised(transcript, APPENDED_AUDIO_WORDS)) >= 2, transcript
    first_file = next(i for i, m in enumerate(messages) if recognised(m.text, AUDIO_WORDS))
    appended_file = next(i for i, m in enumerate(messages) if recognised(m.text, APPENDED_AUDIO_WORDS))
    assert first_file < appended_file
    assert engine.conversations.get_conversation_by_conversation_id(audio_conversation).name == "Audio upload"
    trackers = engine.http("GET", f"/v1/conversations/{audio_conversation}/trackers-detected").json()
    assert [tracker["name"] for tracker in trackers] == ["Money"], trackers


def test_speaker_events_reattribute_audio_messages(engine: Engine, audio_conversation: str) -> None:
    dana = {"id": "dana@example.com", "name": "Dana", "email": "dana@example.com"}
    events = [
        symbl_rest.ConversationSpeakersEvents(type="started_speaking", user=dana, offset={"seconds": 0, "nanos": 0}),
        symbl_rest.ConversationSpeakersEvents(type="stopped_speaking", user=dana, offset={"seconds": 3600, "nanos": 0}),
    ]
    answer = engine.conversations.put_speakers_event_by_conversation_id(
        symbl_rest.PutSpeakersEventsPayload(speaker_events=events), audio_conversation
    )
    assert audio_conversation in answer.message
    # The re-attribution runs as a job the response does not name, so wait on its visible outcome.
    messages = wait_until(
        lambda: engine.conversations.get_messages_by_conversation_id(audio_conversation).messages,
        lambda messages: all(message._from.name == "Dana" for message in messages),
        timeout=JOB_TIMEOUT_SECONDS,
        what="every message attributed to Dana",
    )
    assert messages
    members = engine.conversations.get_members_by_conversation_id(audio_conversation).members
    assert [(member.name, member.email) for member in members] == [("Dana", "dana@example.com")]


def test_add_audio_url_downloads_and_transcribes(engine: Engine, media_url: str) -> None:
    created = engine.async_api.add_audio_url(
        body=symbl_rest.AsyncAudioUrlParameters(url=f"{media_url}/speech.wav", name="Audio by URL"),
        # The client sends these two in the query string even for the JSON url endpoints.
        enable_speaker_diarization=True,
        diarization_speaker_count=1,
    )
    engine.wait_for_job(created.job_id)
    transcript = engine.transcript(created.conversation_id)
    assert len(recognised(transcript, AUDIO_WORDS)) >= 2, transcript


def test_add_video_url_downloads_and_transcribes(engine: Engine, media_url: str) -> None:
    created = engine.async_api.add_video_url(
        body=symbl_rest.AsyncVideoUrlParameters(url=f"{media_url}/speech.mp4", name="Video by URL")
    )
    engine.wait_for_job(created.job_id)
    transcript = engine.transcript(created.conversation_id)
    assert len(recognised(transcript, VIDEO_WORDS)) >= 2, transcript


def test_add_and_append_video_transcribes_both_files(engine: Engine, media_dir: Path) -> None:
    created = engine.async_api.add_video((media_dir / "speech.mp4").read_bytes(), "video/mp4", name="Video upload")
    engine.wait_for_job(created.job_id)
    appended = engine.async_api.append_video(
        (media_dir / "appended.mp4").read_bytes(), "video/mp4", created.conversation_id
    )
    assert appended.conversation_id == created.conversation_id
    engine.wait_for_job(appended.job_id)
    transcript = engine.transcript(created.conversation_id)
    assert len(recognised(transcript, VIDEO_WORDS)) >= 2, transcript
    assert len(recognised(transcript, APPENDED_AUDIO_WORDS)) >= 2, transcript


# --- list and delete (no client method) -----------------------------------------------------------------------


def test_list_and_delete_without_client_methods(engine: Engine) -> None:
    """``symbl-rest`` 1.0.14 has neither ``GET /v1/conversations`` nor ``DELETE /v1/conversations/{id}``."""
    created = engine.async_api.add_text(
        body=symbl_rest.AsyncTextParameters(
            name="To be deleted", messages=[text_message("This one will be deleted.", "Ana", "ana@example.com")]
        )
    )
    engine.wait_for_job(created.job_id)
    listed = engine.http("GET", "/v1/conversations", params={"limit": 100})
    assert listed.status_code == 200
    assert created.conversation_id in {item["id"] for item in listed.json()["conversations"]}

    deleted = engine.http("DELETE", f"/v1/conversations/{created.conversation_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"message": "successfully deleted the conversation"}
    gone = engine.conversations.get_conversation_by_conversation_id
    assert api_error(lambda: gone(created.conversation_id)).status == 404
    assert engine.http("DELETE", f"/v1/conversations/{created.conversation_id}").status_code == 404
    listed_after = engine.http("GET", "/v1/conversations", params={"limit": 100}).json()["conversations"]
    assert created.conversation_id not in {item["id"] for item in listed_after}
