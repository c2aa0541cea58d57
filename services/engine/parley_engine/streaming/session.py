"""One Streaming API connection as a state machine, free of WebSocket and HTTP details.

The router hands it the client's text and binary frames; it answers through a ``FrameSink`` and ends the
connection by raising ``CloseStream``. Its life: connected → (start_request) listening → (stop_request) stopped,
or paused when ``disconnectOnStopRequest`` is false, from where another ``start_request`` listens again. A started
stream whose socket drops without a stop (client gone, network) is ``disconnected`` for ``noConnectionTimeout``
seconds: its conversation and job stay open, and a socket that ``rejoin``s it and sends a ``start_request`` gets
the same conversation created, started and recognizing again, its sentences following the earlier ones.

Audio is decoded to 16 kHz, cut into utterances by the VAD (``speech.segmenter``) and decoded on the live workers:
an interim ``recognition_result`` while someone speaks, the final one when they stop; each final sentence becomes
a ``message_response`` message, and the newest sentences (with a few before them, for context) go through the
same ``TextAnalyzer`` as the Async API for questions, action items, follow-ups, topics and trackers. One recognition
lane and one analysis lane per stream keep its frames in order, while other streams' work runs beside them.

The conversation and its job exist from ``start_request`` on (``conversation_created`` carries both ids); each
final sentence is stored as it is recognized, before the client sees it, and the stream holds its job, in progress,
renewing its lease while it lives. At the end ``StreamConversations.complete`` hands the job to the job runner: the
whole-conversation analysis, the Conversation API and the job's webhook follow from there, as for an Async job. A
stream that dies with its engine is completed by the engine that finds its job abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from parley_engine.conversation import AnalysisOptions, Speaker, Tracker, Utterance, Word
from parley_engine.identifiers import message_id, new_message_id_prefix
from parley_engine.redaction.options import RedactionOptions
from parley_engine.speech.live import FINAL_TAIL_SECONDS, INTERIM_TAIL_SECONDS, LiveDecodeOptions
from parley_engine.speech.segmenter import SegmenterSettings, SpeechProbability, SpeechSegment, UtteranceSegmenter
from parley_engine.speech.sentences import RecognizedWord, sentence_text, split_sentences
from parley_engine.speech.vocabulary import VocabularyCorrector
from parley_engine.streaming import frames
from parley_engine.streaming.audio import AudioDecoder, AudioFrameError, UnsupportedAudio, parse_encoding
from parley_engine.streaming.frames import BadFrame, StartRequest, StreamSpeaker
from parley_engine.streaming.workers import LiveWorkers

log = logging.getLogger(__name__)

# Sentences analysed with each batch of new ones, so "Can you do that?" finds who "you" is.
ANALYSIS_CONTEXT_MESSAGES = 6
FINAL_BEAM_SIZE = 5
# Close codes (RFC 6455): a finished stream, a client that broke the protocol, a frame too large, an engine error.
NORMAL_CLOSURE = 1000
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011


class CloseStream(Exception):
    """End the connection with this close code and reason (after the frames already sent)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class FrameSink(Protocol):
    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame for the client (and the connection's subscribers); never blocks."""


@dataclass(frozen=True)
class OpenedStream:
    conversation_id: str
    job_id: str


class StreamConversations(Protocol):
    """Where a stream's conversation and job live: opened at start, its sentences stored as they come, the job held
    (``renew`` every ``renew_every_seconds``; False once lost) and handed over for analysis at the end."""

    @property
    def renew_every_seconds(self) -> float: ...

    async def open(
        self, *, name: str | None, start_time: datetime, options: dict[str, Any], webhook_url: str | None
    ) -> OpenedStream: ...

    async def record(self, stream: OpenedStream, utterances: Sequence[Utterance]) -> None: ...

    async def renew(self, stream: OpenedStream) -> bool: ...

    async def complete(self, stream: OpenedStream) -> None: ...

    async def fail(self, stream: OpenedStream, reason: str) -> None: ...


@dataclass(frozen=True)
class SessionLimits:
    max_frame_bytes: int = 65_536
    summary_base_url: str = "http://127.0.0.1:8700"
    redaction_key: bytes = b""  # the ``hash`` substitution's key (``substitution_key``)


class StreamSession:
    def __init__(
        self,
        connection_id: str,
        sink: FrameSink,
        conversations: StreamConversations,
        workers: LiveWorkers,
        vad_factory: Callable[[], SpeechProbability],
        *,
        limits: SessionLimits | None = None,
        segmenter_settings: SegmenterSettings | None = None,
        webhook_refusal: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        """``webhook_refusal`` says why a start_request's webhookUrl will not be called back (None: it will)."""
        self.connection_id = connection_id
        self._webhook_refusal = webhook_refusal
        self._sink = sink
        self._conversations = conversations
        self._workers = workers
        self._vad_factory = vad_factory
        self._limits = limits or SessionLimits()
        self._segmenter_settings = segmenter_settings or SegmenterSettings()
        self.state = "connected"
        self.conversation_id: str | None = None
        self.job_id: str | None = None
        self._opened: OpenedStream | None = None
        self._request: StartRequest | None = None
        self._decoder: AudioDecoder | None = None
        self._segmenter: UtteranceSegmenter | None = None
        self._start_time = datetime.now(UTC)
        self._prefix = new_message_id_prefix()
        self._utterances: list[Utterance] = []
        self._sequence = 0
        self._recognition: asyncio.Queue[SpeechSegment | None] = asyncio.Queue()
        self._analysis: asyncio.Queue[list[Utterance] | None] = asyncio.Queue()
        self._lanes: list[asyncio.Task[None]] = []
        self._sent_insights: set[tuple[str, str]] = set()
        self._completed = False
        self._finishing: asyncio.Future[None] | None = None
        self._rejoined = False
        # Who is speaking now, from speaker events (the Telephony API's eventUrl); None: the start_request's speaker.
        self._current_speaker: StreamSpeaker | None = None
        # Monotonic times: when the stream began (its maximum duration counts from here) and when it was paused.
        self.began_at = time.monotonic()
        self.paused_at: float | None = None

    # Client frames

    async def receive_text(self, text: str) -> None:
        try:
            data = frames.parse_text_frame(text)
        except BadFrame as error:
            self._refuse("invalid_frame", str(error))
        kind = data["type"]
        if kind == "start_request":
            await self._start(data)
        elif kind in frames.STOP_TYPES:
            await self._stop()
        elif kind == "modify_request":
            self._modify(data)
        else:
            self._refuse("invalid_frame", f"unknown message type {kind!r}: expected start_request or stop_request")

    async def receive_audio(self, data: bytes) -> None:
        if len(data) > self._limits.max_frame_bytes:
            self.report_error(
                "frame_too_large", f"an audio frame may hold at most {self._limits.max_frame_bytes} bytes"
            )
            raise CloseStream(MESSAGE_TOO_BIG, "audio frame too large")
        if self.state != "listening":
            self._refuse("audio_before_start", "send a start_request before any audio")
        assert self._decoder is not None and self._segmenter is not None
        try:
            samples = self._decoder.decode(data)
        except AudioFrameError as error:
            self._refuse("invalid_audio", str(error))
        segments = await asyncio.to_thread(self._segmenter.feed, samples)
        for segment in segments:
            self._recognition.put_nowait(segment)

    async def complete(self) -> None:
        """End the stream as ``stop_request`` does (a timeout, say): final results, then the closing frames."""
        await self._finish(announce=True)

    async def end(self) -> None:
        """The connection is over (client gone, timeout, engine stopping): finish the conversation, send nothing."""
        await self._finish(announce=False)

    async def fail(self, kind: str, reason: str) -> None:
        """The stream's audio source failed before anything was heard (a call refused or never answered): an error
        frame, and the job fails with ``reason`` instead of being analysed."""
        self.report_error(kind, reason)
        await self._finish(announce=False, failure=reason)

    def speaker_changed(self, speaker: StreamSpeaker | None) -> None:
        """A speaker event: the sentences recognized from now on are attributed to ``speaker`` (None: the
        start_request's own speaker again)."""
        self._current_speaker = speaker

    @property
    def reconnect_window(self) -> float:
        """Seconds a started stream waits for its client after its socket dropped (``noConnectionTimeout``)."""
        if self._opened is None or self._completed or self._request is None:
            return 0.0
        return float(self._request.no_connection_timeout)

    @property
    def pause_deadline(self) -> float | None:
        """When a paused stream's socket is closed (monotonic): ``disconnectOnStopRequestTimeout`` after the stop."""
        if self.state != "paused" or self.paused_at is None or self._request is None:
            return None
        return self.paused_at + self._request.disconnect_on_stop_request_timeout

    def disconnect(self, sink: FrameSink) -> None:
        """The socket dropped without a stop: the stream goes on without a client, its frames (results of the audio
        already heard) going to ``sink``, the subscribers, until a socket ``rejoin``s or it is ended."""
        self._sink = sink
        self.state = "disconnected"

    async def rejoin(self, sink: FrameSink) -> None:
        """A new socket continues the stream. What was heard before the drop is recognized first (and goes to the
        subscribers), so the new socket's frames start with the conversation announced by its ``start_request``."""
        await self._drain()
        self._sink = sink
        self.state = "connected"
        self._rejoined = True

    # Life cycle

    async def _start(self, data: dict[str, Any]) -> None:
        if self.state == "listening":
            self._refuse("repeated_start", "the stream is already started: send stop_request first")
        if self.state == "stopped":
            self._refuse("stream_stopped", "the stream is stopped")
        try:
            request = frames.parse_start_request(data)
            encoding = parse_encoding(request.encoding)
            decoder = AudioDecoder(encoding, request.sample_rate)
            if not request.config.language_code.lower().startswith("en"):
                raise UnsupportedAudio(f"language {request.config.language_code} is not supported (English only)")
        except (BadFrame, UnsupportedAudio) as error:
            self._refuse("invalid_start_request", str(error))
        if request.callback_url and not request.callback_url.lower().startswith(("http://", "https://")):
            self._refuse("invalid_start_request", "invalid start_request: webhookUrl must be an http(s) URL")
        if request.callback_url and self._webhook_refusal is not None:
            refusal = await self._webhook_refusal(request.callback_url)
            if refusal is not None:
                self._refuse("invalid_start_request", f"invalid start_request: {refusal}")
        self._request, self._decoder = request, decoder
        self._workers.prepare()
        if self._opened is None:
            self._start_time = datetime.now(UTC)
            opened = await self._conversations.open(
                name=request.title,
                start_time=self._start_time,
                options=self._job_options(request),
                webhook_url=request.callback_url,
            )
            self._opened, self.conversation_id, self.job_id = opened, opened.conversation_id, opened.job_id
            self._segmenter = UtteranceSegmenter(self._vad_factory(), self._segmenter_settings)
            self._lanes = [
                asyncio.create_task(self._recognize_lane(), name=f"stream-{self.connection_id}-recognition"),
                asyncio.create_task(self._analysis_lane(), name=f"stream-{self.connection_id}-analysis"),
                asyncio.create_task(self._hold_lane(opened), name=f"stream-{self.connection_id}-job-lease"),
            ]
            self._sink.send(frames.conversation_created(opened.conversation_id, opened.job_id))
        elif self._rejoined:
            self._rejoined = False
            self._sink.send(frames.conversation_created(self._opened.conversation_id, self._opened.job_id))
        assert self._opened is not None
        self.state = "listening"
        self.paused_at = None
        self._sink.send(frames.started_listening())
        self._sink.send(frames.recognition_started(self._opened.conversation_id, self._opened.job_id))

    async def _stop(self) -> None:
        if self.state != "listening":
            self._refuse("stop_before_start", "the stream is not started: send start_request first")
        assert self._request is not None and self.conversation_id is not None
        # disconnectOnStopRequestTimeout 0: the socket is not kept after stop_request, so neither is the stream.
        if self._request.disconnect_on_stop_request or self._request.disconnect_on_stop_request_timeout == 0:
            await self._finish(announce=True)
            raise CloseStream(NORMAL_CLOSURE, "stream stopped")
        await self._drain()
        self.state = "paused"
        self.paused_at = time.monotonic()
        self._sink.send(frames.recognition_stopped(self.conversation_id))

    def _modify(self, data: dict[str, Any]) -> None:
        if self.state != "listening" or self._request is None:
            self._refuse("modify_before_start", "the stream is not started: send start_request first")
        recognition = data.get("speechRecognition") or {}
        try:
            encoding = parse_encoding(recognition.get("encoding") or self._request.encoding)
            rate = int(recognition.get("sampleRateHertz") or self._request.sample_rate)
            self._decoder = AudioDecoder(encoding, rate)
        except (UnsupportedAudio, ValueError, TypeError) as error:
            self._refuse("invalid_modify_request", str(error))
        self._sink.send(frames.platform_message("session_modified"))

    async def _drain(self) -> None:
        """Recognize what was still heard and analyse it, so every final result is out before what follows."""
        if self._segmenter is not None and (last := await asyncio.to_thread(self._segmenter.flush)) is not None:
            self._recognition.put_nowait(last)
        await self._recognition.join()
        await self._analysis.join()

    async def _finish(self, *, announce: bool, failure: str | None = None) -> None:
        # Once begun, finishing runs to its end (the job handed over) even if a caller is cancelled meanwhile; a
        # second caller waits for the same finish.
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish_once(announce=announce, failure=failure))
        await asyncio.shield(self._finishing)

    async def _finish_once(self, *, announce: bool, failure: str | None = None) -> None:
        self._completed = True
        self.state = "stopped"
        opened = self._opened
        if opened is None:
            return
        try:
            await self._drain()
        finally:
            for lane in self._lanes:
                lane.cancel()
        if failure is not None:
            await self._conversations.fail(opened, failure)
            self._sink.send(frames.recognition_stopped(opened.conversation_id))
            return
        # Every final sentence is stored already; the job runner takes the job from here.
        await self._conversations.complete(opened)
        if announce:
            summary_url = f"{self._limits.summary_base_url}/v1/conversations/{opened.conversation_id}/experiences"
            self._sink.send(frames.conversation_completed(opened.conversation_id, opened.job_id, summary_url))
            self._sink.send(frames.recognition_stopped(opened.conversation_id))

    @staticmethod
    def _job_options(request: StartRequest) -> dict[str, Any]:
        analysis: dict[str, Any] = {"confidence_threshold": request.config.confidence_threshold}
        if request.trackers:
            analysis["trackers"] = [t.model_dump() for t in request.trackers]
        if request.redaction is not None:
            # The conversation keeps it: media or messages appended later are redacted alike.
            analysis["redaction"] = request.redaction.model_dump(mode="json")
        return {"name": request.title, "analysis": analysis}

    # Recognition, analysis and job lease lanes

    async def _hold_lane(self, opened: OpenedStream) -> None:
        """Renew the stream's claim on its job while the stream lives, as the job runner does for the jobs it runs."""
        while True:
            await asyncio.sleep(self._conversations.renew_every_seconds)
            try:
                if not await self._conversations.renew(opened):
                    log.warning("stream %s lost its job %s to another runner", self.connection_id, opened.job_id)
                    return
            except Exception:
                log.exception("stream %s: could not renew its job's lease; retrying", self.connection_id)

    async def _recognize_lane(self) -> None:
        while True:
            segment = await self._recognition.get()
            try:
                if segment is None:
                    return
                # An interim result already overtaken by newer audio is not worth decoding.
                if not segment.final and not self._recognition.empty():
                    continue
                await self._recognize(segment)
            except Exception:
                log.exception("stream %s: recognition failed", self.connection_id)
            finally:
                self._recognition.task_done()

    async def _recognize(self, segment: SpeechSegment) -> None:
        if segment.final:
            options = LiveDecodeOptions(beam_size=FINAL_BEAM_SIZE, tail_seconds=FINAL_TAIL_SECONDS)
        else:
            options = LiveDecodeOptions(beam_size=1, tail_seconds=INTERIM_TAIL_SECONDS)
        words = await self._workers.decode(segment.samples, options)
        if segment.final and self._request is not None:
            words = VocabularyCorrector(self._request.custom_vocabulary or []).correct(words)
        if not words:
            return
        redaction = self._request.redaction if self._request is not None else None
        if not segment.final:
            if redaction is not None and redaction.enabled:
                [interim] = await self._redacted([self._utterance(words, segment.start)], redaction)
                words = _recognized_words(interim, segment.start)
            self._sink.send(frames.recognition_result(words, final=False, user=self._user(), offset=segment.start))
            return
        sentences = list(split_sentences(words))
        new = [self._utterance(sentence, segment.start) for sentence in sentences]
        if redaction is not None and redaction.enabled:
            # Before the sentences are stored or sent: the client, the stored conversation and whoever relays the
            # stream's frames (ingest, to Kafka) see only the redacted words.
            new = await self._redacted(new, redaction)
            sentences = [_recognized_words(utterance, segment.start) for utterance in new]
            words = [word for sentence in sentences for word in sentence]
        self._utterances.extend(new)
        await self._store(new)
        self._sink.send(frames.recognition_result(words, final=True, user=self._user(), offset=segment.start))
        self._sequence += 1
        messages = [
            frames.stream_message(
                utterance.id,
                utterance.text,
                sentence,
                sender=self._user(),
                start=self._start_time,
                offset=segment.start,
            )
            for utterance, sentence in zip(new, sentences, strict=True)
        ]
        self._sink.send(frames.message_response(messages, self._sequence))
        self._analysis.put_nowait(new)

    async def _redacted(self, utterances: list[Utterance], redaction: RedactionOptions) -> list[Utterance]:
        return await self._workers.redact(utterances, redaction, hash_key=self._limits.redaction_key)

    async def _store(self, new: list[Utterance]) -> None:
        """Commit final sentences before the client sees them, so whatever it was told survives an engine crash."""
        assert self._opened is not None
        try:
            await self._conversations.record(self._opened, new)
        except Exception:
            # The client still gets its results; the job's outcome lacks these sentences (lease lost, store down).
            log.exception("stream %s: could not store %d final sentence(s)", self.connection_id, len(new))

    def _speaker(self) -> StreamSpeaker | None:
        if self._current_speaker is not None:
            return self._current_speaker
        return self._request.speaker if self._request is not None else None

    def _utterance(self, sentence: list[RecognizedWord], offset: float) -> Utterance:
        speaker = self._speaker()
        user_id = speaker.user_id if speaker else None
        return Utterance(
            id=message_id(self._prefix, len(self._utterances)),
            text=sentence_text(sentence),
            speaker=Speaker(
                name=(speaker.name if speaker else None) or "Speaker 1",
                user_id=user_id,
                email=user_id if user_id and "@" in user_id else None,
            ),
            start_offset=round(offset + sentence[0].start, 3),
            end_offset=round(offset + sentence[-1].end, 3),
            words=[
                Word(
                    word=w.text,
                    start_offset=round(offset + w.start, 3),
                    end_offset=round(offset + w.end, 3),
                    score=w.probability,
                )
                for w in sentence
            ],
        )

    def _user(self) -> dict[str, Any]:
        speaker = self._speaker()
        name = (speaker.name if speaker else None) or "Speaker 1"
        user_id = speaker.user_id if speaker else None
        member = str(uuid.uuid5(uuid.NAMESPACE_URL, f"parley:{self.conversation_id}:{user_id or name}"))
        return {"id": member, "name": name, "userId": user_id}

    async def _analysis_lane(self) -> None:
        while True:
            new = await self._analysis.get()
            try:
                if new is None:
                    return
                # Batch whatever else arrived meanwhile: one analysis for all of it.
                while not self._analysis.empty():
                    more = self._analysis.get_nowait()
                    self._analysis.task_done()
                    if more:
                        new = [*new, *more]
                await self._analyze(new)
            except Exception:
                log.exception("stream %s: live analysis failed", self.connection_id)
            finally:
                self._analysis.task_done()

    async def _analyze(self, new: list[Utterance]) -> None:
        request = self._request
        assert request is not None and self.conversation_id is not None
        first_new = self._utterances.index(new[0])
        window = self._utterances[max(0, first_new - ANALYSIS_CONTEXT_MESSAGES) : first_new + len(new)]
        options = AnalysisOptions(
            confidence_threshold=request.config.confidence_threshold,
            trackers=[Tracker(name=t.name, vocabulary=t.vocabulary) for t in request.trackers or []],
            detect_entities=False,
            enable_summary=False,
        )
        insights = await self._workers.analyze(
            window, options, conversation_id=self.conversation_id, conversation_start=self._start_time
        )
        new_ids = {u.id for u in new}
        wanted = set(request.insight_types)
        found = [
            frames.insight(item)
            for item in [*insights.questions, *insights.action_items, *insights.follow_ups]
            if item["type"] in wanted and new_ids & set(item.get("messageIds") or []) and self._first_time(item)
        ]
        if found:
            self._sink.send(frames.insight_response(found, self._sequence))
        topics = [frames.topic(t) for t in insights.topics if new_ids & set(t.get("messageIds") or [])]
        topics = [t for t in topics if self._first_time({"type": "topic", "text": t["phrases"]})]
        if topics:
            self._sink.send(frames.topic_response(topics, self._sequence))
        trackers = [t for t in insights.trackers if _tracker_matches_in(t, new_ids)]
        if trackers:
            self._sink.send(frames.tracker_response(trackers, self._sequence))

    def _first_time(self, item: dict[str, Any]) -> bool:
        key = (str(item["type"]), str(item.get("text", "")).lower())
        if key in self._sent_insights:
            return False
        self._sent_insights.add(key)
        return True

    # Errors

    def report_error(self, kind: str, message: str) -> None:
        """An error frame for the client; the connection goes on unless the caller closes it."""
        for frame in frames.error_frames(message, kind):
            self._sink.send(frame)

    def report_status(self, kind: str, data: dict[str, Any]) -> None:
        """A ``message`` frame about the stream's source (a call that ended, and why)."""
        self._sink.send(frames.platform_message(kind, data=data))

    def _refuse(self, kind: str, message: str) -> NoReturn:
        """Tell the client what was wrong, then close with 1008."""
        self.report_error(kind, message)
        raise CloseStream(POLICY_VIOLATION, kind)


def _recognized_words(utterance: Utterance, offset: float) -> list[RecognizedWord]:
    """An utterance's words as the recognizer's, timed from ``offset`` again (the segment's start)."""
    return [
        RecognizedWord(
            text=word.word,
            start=round(word.start_offset - offset, 3),
            end=round(word.end_offset - offset, 3),
            probability=word.score if word.score is not None else 1.0,
        )
        for word in utterance.words or []
    ]


def _tracker_matches_in(tracker: dict[str, Any], message_ids: set[str]) -> bool:
    for match in tracker.get("matches") or []:
        for reference in match.get("messageRefs") or []:
            if reference.get("id") in message_ids:
                return True
    return False
