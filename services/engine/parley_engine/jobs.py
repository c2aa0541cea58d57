"""The durable job runner: turns scheduled jobs into utterances and regenerated insights.

Jobs live in the database, so a restart loses none. A dispatcher loop claims the oldest runnable job (one
conversation's jobs run one at a time, in submission order) while fewer than ``workers`` jobs run. Several
replicas may share one database: each claim is a lease in this runner's name that a keeper task renews while the
job runs; a job whose lease ran out (its replica died or stalled) is scheduled again by whichever replica sweeps
first, at start and every few seconds, and a runner stops a job it no longer holds. Stopping hands this
runner's jobs back at once. A live stream's job is held by its stream while it lasts and handed to this runner
when the stream ends (``run_handed_over``). Each job: in_progress → transcribe (audio, video), read messages
(text) or take the stream's stored sentences (streaming) → analyze the whole conversation → commit utterances,
insights and ``completed`` in one transaction. A job that cannot be done fails with the reason; an unexpected
error fails the job with "internal error: …", never the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from parley_shared.url_safety import UnfetchableUrl, stream_checked_url

from parley_engine.conversation import AnalysisOptions, ConversationInsights, Speaker, Utterance
from parley_engine.identifiers import message_id, new_message_id_prefix
from parley_engine.media_store import KeptMedia
from parley_engine.metrics import engine_job_ended
from parley_engine.redaction.options import RedactionOptions, substitution_key
from parley_engine.redaction.words import redacted_spans
from parley_engine.settings import EngineSettings
from parley_engine.speech.options import SpeechOptions
from parley_engine.speech.redacted_audio import REDACTED_AUDIO_SUFFIX
from parley_engine.store import ConversationNotFound, ConversationRow, ConversationStore, JobLeaseLost, JobRow, JobStore
from parley_engine.workers import AnalysisWorkers, JobInputError

log = logging.getLogger(__name__)

# How long a claim holds without renewal. A crashed replica's jobs wait this long before another replica
# takes them; a replica whose event loop stalls this long may lose its jobs (and is then stopped from
# committing them). Replicas' clocks must agree to well within it.
DEFAULT_LEASE_SECONDS = 30.0

MEDIA_SUFFIXES = {
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/aac": ".aac",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/webm": ".webm",
    "audio/amr": ".amr",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}
# Jobs whose input is media the conversation's page can play.
MEDIA_JOB_KINDS = frozenset({"audio", "video", "audio_url", "video_url"})
# Unknown formats get a neutral name, so the decoder probes the content (``.bin`` would pick a text-art demuxer).
UNKNOWN_MEDIA_SUFFIX = ".media"


def media_suffix(content_type: str | None, url: str | None = None) -> str:
    if url:
        suffix = Path(urlsplit(url).path).suffix.lower()
        if re.fullmatch(r"\.[a-z0-9]{2,5}", suffix):
            return suffix
    if content_type:
        return MEDIA_SUFFIXES.get(content_type.split(";")[0].strip().lower(), UNKNOWN_MEDIA_SUFFIX)
    return UNKNOWN_MEDIA_SUFFIX


def text_utterances(
    messages: Sequence[dict[str, Any]], conversation_start: datetime, first_index: int, id_prefix: str
) -> list[Utterance]:
    """Utterances from a text job's messages; times become seconds from the conversation's start."""

    def offset(moment: str | None) -> float | None:
        if not moment:
            return None
        return (datetime.fromisoformat(moment) - conversation_start).total_seconds()

    utterances = []
    for index, message in enumerate(messages, start=first_index):
        sender = message.get("from") or {}
        user_id = sender.get("userId")
        email = sender.get("email") or (user_id if user_id and "@" in user_id else None)
        duration = message.get("duration") or {}
        utterances.append(
            Utterance(
                id=message_id(id_prefix, index),
                text=message["payload"]["content"],
                speaker=Speaker(id=sender.get("id"), name=sender.get("name"), user_id=user_id, email=email),
                start_offset=offset(duration.get("startTime")),
                end_offset=offset(duration.get("endTime")),
            )
        )
    return utterances


def shifted(utterances: Sequence[Utterance], seconds: float) -> list[Utterance]:
    """Utterances moved ``seconds`` later: appended media continues after what the conversation already has."""
    if seconds == 0:
        return list(utterances)

    def move(value: float | None) -> float | None:
        return None if value is None else value + seconds

    return [
        utterance.model_copy(
            update={
                "start_offset": move(utterance.start_offset),
                "end_offset": move(utterance.end_offset),
                "words": None
                if utterance.words is None
                else [
                    w.model_copy(
                        update={"start_offset": w.start_offset + seconds, "end_offset": w.end_offset + seconds}
                    )
                    for w in utterance.words
                ],
            }
        )
        for utterance in utterances
    ]


def last_offset(utterances: Sequence[Utterance]) -> float | None:
    offsets = [u.end_offset if u.end_offset is not None else u.start_offset for u in utterances]
    known = [o for o in offsets if o is not None]
    return max(known) if known else None


def reattributed(utterances: Sequence[Utterance], speaker_events: Sequence[dict[str, Any]]) -> list[Utterance]:
    """Utterances whose speaker is whoever the speaker events say talked most during them.

    Events are Symbl's ``{type: started_speaking|stopped_speaking, user:{id,name,email}, offset:{seconds,nanos}}``.
    An utterance nobody's interval overlaps goes to whoever started speaking last before it; one without timing
    keeps its speaker.
    """
    intervals: list[tuple[float, float, dict[str, Any]]] = []
    open_since: dict[str, tuple[float, dict[str, Any]]] = {}

    def seconds(event: dict[str, Any]) -> float:
        offset = event.get("offset") or {}
        return float(offset.get("seconds") or 0) + float(offset.get("nanos") or 0) / 1e9

    for event in sorted(speaker_events, key=seconds):
        user = event.get("user") or {}
        key = str(user.get("id") or user.get("email") or user.get("name"))
        if event.get("type") == "started_speaking":
            open_since.setdefault(key, (seconds(event), user))
        elif event.get("type") == "stopped_speaking" and key in open_since:
            start, who = open_since.pop(key)
            intervals.append((start, seconds(event), who))
    intervals.extend((start, float("inf"), who) for start, who in open_since.values())
    if not intervals:
        return list(utterances)

    result = []
    for utterance in utterances:
        if utterance.start_offset is None:
            result.append(utterance)
            continue
        start = utterance.start_offset
        end = utterance.end_offset if utterance.end_offset is not None else start
        overlaps = [(min(end, i_end) - max(start, i_start), i_start, who) for i_start, i_end, who in intervals]
        best = max(overlaps, key=lambda item: (item[0], item[1]))
        if best[0] < 0 or (best[0] == 0 and not (best[1] <= start)):
            earlier = [item for item in intervals if item[0] <= start]
            if not earlier:
                result.append(utterance)
                continue
            who = max(earlier, key=lambda item: item[0])[2]
        else:
            who = best[2]
        email = who.get("email")
        speaker = Speaker(name=who.get("name"), email=email, user_id=email or who.get("id"))
        result.append(utterance.model_copy(update={"speaker": speaker}))
    return result


def conversation_end(conversation: ConversationRow, utterances: Sequence[Utterance]) -> datetime | None:
    end = last_offset(utterances)
    return None if end is None else conversation.start_time + timedelta(seconds=end)


async def regenerate_insights(
    conversations: ConversationStore, workers: AnalysisWorkers, conversation_id: str, **option_overrides: Any
) -> ConversationInsights:
    """Analyze a conversation's stored utterances again and store the result (``GET …/summary?refresh=true``)."""
    conversation = await conversations.conversation(conversation_id)
    utterances = await conversations.utterances(conversation_id)
    options = AnalysisOptions.model_validate({**conversation.analysis_options, **option_overrides})
    insights = await workers.analyze(
        utterances, options, conversation_id=conversation_id, conversation_start=conversation.start_time
    )
    await conversations.save_insights(conversation_id, insights)
    return insights


def new_replica_id() -> str:
    """Names this runner in ``jobs.claimed_by``: the host and process for people, a random part for uniqueness."""
    return f"{socket.gethostname()[:80]}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


class JobRunner:
    """Runs scheduled jobs with at most ``settings.workers`` at once; ``wake()`` after submitting one."""

    def __init__(
        self,
        jobs: JobStore,
        conversations: ConversationStore,
        workers: AnalysisWorkers,
        settings: EngineSettings,
        *,
        on_status_change: Callable[[], None] = lambda: None,
        replica_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._jobs = jobs
        self._conversations = conversations
        self._workers = workers
        self._settings = settings
        self._on_status_change = on_status_change
        self.replica_id = replica_id or new_replica_id()
        self._lease_seconds = lease_seconds
        self._kept_media = KeptMedia(settings.kept_media_dir)
        self._substitution_key = substitution_key(settings.app_secret.get_secret_value())
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._lease_keeper: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running_job_ids(self) -> set[str]:
        return set(self._running)

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        await self._reschedule_abandoned_jobs()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="job-dispatcher")
        self._lease_keeper = asyncio.create_task(self._keep_leases(), name="job-lease-keeper")

    async def stop(self, *, release_jobs: bool = True) -> None:
        """Stop claiming and cancel running jobs; they are scheduled again for any replica to take.

        ``release_jobs=False`` leaves them claimed, as a crash would: they wait for their leases to run out.
        """
        self._stopping = True
        tasks = [t for t in [self._dispatcher, self._lease_keeper, *self._running.values()] if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=10)
            if stuck:
                log.warning("%d job task(s) did not stop within 10 s", len(stuck))
        self._dispatcher = self._lease_keeper = None
        if release_jobs:
            try:
                await self._jobs.release_jobs(self.replica_id)
            except Exception:
                log.exception("could not hand back this replica's jobs; they resume when their leases run out")

    async def _reschedule_abandoned_jobs(self) -> None:
        resumed = await self._jobs.reschedule_abandoned_jobs()
        if resumed:
            log.info("rescheduled %d job(s) whose replica stopped renewing their lease", resumed)
            self._wake.set()

    async def _keep_leases(self) -> None:
        """Renew this runner's leases, stop jobs it lost, and sweep up jobs abandoned by stopped replicas."""
        interval = self._lease_seconds / 3
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                lost = await self._jobs.renew_leases(self.replica_id, set(self._running), self._lease_seconds)
                for job_id in lost:
                    task = self._running.get(job_id)
                    if task is not None and not task.done():
                        log.warning("job %s lost its lease to another replica; stopping it here", job_id)
                        task.cancel()
                await self._reschedule_abandoned_jobs()
            except Exception:
                log.exception("could not renew job leases; retrying")

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                while len(self._running) < self._settings.workers:
                    job = await self._jobs.claim_next_job(claimed_by=self.replica_id, lease_seconds=self._lease_seconds)
                    if job is None:
                        break
                    self._on_status_change()
                    task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                    self._running[job.id] = task
                    task.add_done_callback(functools.partial(self._job_done, job.id))
            except Exception:
                log.exception("the job dispatcher could not claim a job; retrying")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races a wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.dispatch_poll_seconds):
                    await self._wake.wait()

    def run_handed_over(self, job: JobRow) -> None:
        """Run a job whose holder passed its claim to this runner (``JobStore.hand_over_job``: a finished stream's).

        It runs beside the dispatched jobs and its lease is kept like theirs. While the runner stops it is left
        claimed: ``stop`` hands it back, or its lease runs out.
        """
        if self._stopping:
            return
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._running[job.id] = task
        task.add_done_callback(functools.partial(self._job_done, job.id))

    def _job_done(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._wake.set()

    async def _run(self, job: JobRow) -> None:
        finished = False
        kept: Path | None = None
        try:
            if job.kind == "speakers":
                await self._reattribute_speakers(job)
            else:
                kept = await self._process(job)
            finished = True
        except JobLeaseLost:
            # Another replica runs it now and needs its media; its outcome is that replica's to commit.
            log.warning("job %s was taken over by another replica; this run's outcome is dropped", job.id)
        except JobInputError as error:
            finished = await self._fail(job, str(error))
        except ConversationNotFound:
            finished = await self._fail(job, "the conversation was deleted")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("job %s failed unexpectedly", job.id)
            finished = await self._fail(job, f"internal error: {type(error).__name__}: {error}")
        finally:
            if finished:
                self._on_status_change()
                paths = self._media_paths(job)
                if kept is not None and not self._kept_media.keep(job.conversation_id, kept):
                    paths.append(kept)  # the conversation has its recording already
                for path in paths:
                    path.unlink(missing_ok=True)

    async def _fail(self, job: JobRow, reason: str) -> bool:
        failed = await self._jobs.fail_job(job.id, reason, claimed_by=self.replica_id)
        if failed:
            engine_job_ended("failed")
        return failed

    def _media_paths(self, job: JobRow) -> list[Path]:
        paths = [Path(job.input_path)] if job.input_path else []
        if job.kind.endswith("_url"):
            paths.extend(self._settings.uploads_dir.glob(f"{job.id}.*"))
        return paths

    async def _process(self, job: JobRow) -> Path | None:
        """Run a job to completion; the media file to keep for the conversation's page, if any."""
        conversation = await self._conversations.conversation(job.conversation_id)
        existing = await self._conversations.utterances(job.conversation_id)
        prefix = new_message_id_prefix()
        path: Path | None = None
        if job.kind == "text":
            new = text_utterances(job.input_json or [], conversation.start_time, len(existing), prefix)
        elif job.kind == "streaming":
            # Recognized live (parley_engine.streaming) and already stored, each as it came: nothing to transcribe,
            # the analysis reads the stored sentences. (A stream job of an engine before that carries them instead.)
            new = [Utterance.model_validate(utterance) for utterance in job.input_json or []]
        else:
            path = Path(job.input_path) if job.input_path else await self._download(job)
            speech = SpeechOptions.model_validate(job.options.get("speech") or {})
            transcribed = await self._workers.transcribe(
                path, speech, first_message_index=len(existing), id_prefix=prefix
            )
            shift = last_offset(existing) or 0.0
            new = shifted(transcribed, shift)
        options_data = {**conversation.analysis_options, **(job.options.get("analysis") or {})}
        options = AnalysisOptions.model_validate(options_data)
        redaction = options.redaction
        kept = path if path is not None and job.kind in MEDIA_JOB_KINDS and self._settings.keep_media else None
        if redaction.enabled and job.kind != "streaming":
            # Before anything is stored or analysed: every message, insight and export is built from these.
            # (A stream's sentences were redacted live, as they were recognised.)
            unredacted = new
            new = await self._workers.redact(new, redaction, hash_key=self._substitution_key)
            # The recording is kept only with its redacted words silenced, when the request asked for that.
            kept = None
            if path is not None and redaction.redact_audio and self._settings.keep_media:
                kept = await self._redacted_audio(job, path, unredacted, new, shift, redaction)
        everything = [*existing, *new]
        insights = await self._workers.analyze(
            everything, options, conversation_id=conversation.id, conversation_start=conversation.start_time
        )
        outcome = await self._jobs.complete_job(
            job.id,
            new_utterances=new,
            insights=insights,
            analysis_options=options_data,
            end_time=conversation_end(conversation, everything),
            claimed_by=self.replica_id,
        )
        engine_job_ended(outcome)
        return kept

    async def _redacted_audio(
        self,
        job: JobRow,
        media: Path,
        unredacted: list[Utterance],
        redacted: list[Utterance],
        shift: float,
        redaction: RedactionOptions,
    ) -> Path:
        """The job's audio with every redacted word blanked, written beside its media (``redactAudio``)."""
        spans = [
            (start - shift, end - shift)
            for before, after in zip(unredacted, redacted, strict=True)
            for start, end in redacted_spans(before, after)
        ]
        target = media.with_name(f"{job.id}-redacted{REDACTED_AUDIO_SUFFIX}")
        await self._workers.write_redacted_audio(media, spans, target, redaction.audio_substitution)
        return target

    async def _reattribute_speakers(self, job: JobRow) -> None:
        conversation = await self._conversations.conversation(job.conversation_id)
        utterances = reattributed(await self._conversations.utterances(job.conversation_id), job.input_json or [])
        insights = await self._workers.analyze(
            utterances,
            AnalysisOptions.model_validate(conversation.analysis_options),
            conversation_id=conversation.id,
            conversation_start=conversation.start_time,
        )
        await self._jobs.complete_reanalysis(
            job.id, utterances=utterances, insights=insights, claimed_by=self.replica_id
        )

    async def _download(self, job: JobRow) -> Path:
        """Stream a url job's media to disk, bounded by ``max_upload_bytes``; failures are the job's reason.

        Only public addresses are fetched (unless ``allow_private_media_urls``), each redirect re-checked.
        """
        url = str((job.input_json or {}).get("url"))
        limit = self._settings.max_upload_bytes
        self._settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=120.0)) as client,
                stream_checked_url(
                    client, url, allow_private=self._settings.allow_private_media_urls, fetcher="this engine"
                ) as response,
            ):
                if response.status_code >= 400:
                    raise JobInputError(f"could not download {url}: HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise JobInputError(f"could not download {url}: the file is larger than {limit} bytes")
                path = self._settings.uploads_dir / f"{job.id}{media_suffix(response.headers.get('content-type'), url)}"
                received = 0
                with path.open("wb") as file:
                    async for chunk in response.aiter_bytes(1024 * 1024):
                        received += len(chunk)
                        if received > limit:
                            raise JobInputError(f"could not download {url}: the file is larger than {limit} bytes")
                        file.write(chunk)
        except UnfetchableUrl as error:
            raise JobInputError(f"could not download {url}: {error}") from None
        except httpx.HTTPError as error:
            raise JobInputError(f"could not download {url}: {type(error).__name__}: {error}") from None
        if received == 0:
            raise JobInputError(f"could not download {url}: the response was empty")
        return path
