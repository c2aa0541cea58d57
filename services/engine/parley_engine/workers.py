"""Where the CPU-bound work of a job runs: speech-to-text and analysis.

``ProcessPoolWorkers`` (the default) runs them in worker processes, each building one ``SpeechRecognizer`` and
one ``TextAnalyzer`` the first time it needs them, so models load once per process and the event loop never
stalls. ``ThreadWorkers`` runs given objects on threads: for tests and for light fakes.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from parley_engine.conversation import AnalysisOptions, ConversationInsights, Utterance
from parley_engine.processes import die_with_parent
from parley_engine.redaction.options import AudioSubstitution, RedactionOptions
from parley_engine.settings import usable_cpu_count
from parley_engine.speech.options import SpeechOptions

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobInputError(Exception):
    """The job cannot be done with its input; the message is the job's failure reason for the caller."""


class Recognizer(Protocol):
    def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int, id_prefix: str
    ) -> list[Utterance]: ...


class Analyzer(Protocol):
    def analyze(
        self,
        utterances: list[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights: ...


class UtteranceRedactor(Protocol):
    def redact(
        self, utterances: Sequence[Utterance], options: RedactionOptions, *, hash_key: bytes
    ) -> list[Utterance]: ...


class AnalysisWorkers(Protocol):
    async def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int, id_prefix: str
    ) -> list[Utterance]: ...

    async def analyze(
        self,
        utterances: Sequence[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights: ...

    async def redact(
        self, utterances: Sequence[Utterance], options: RedactionOptions, *, hash_key: bytes
    ) -> list[Utterance]: ...

    async def write_redacted_audio(
        self, source: Path, spans: Sequence[tuple[float, float]], target: Path, substitution: AudioSubstitution
    ) -> None: ...

    def close(self) -> None: ...


def real_recognizer(cpu_threads: int = 0) -> Recognizer:
    """The Whisper recognizer; ``cpu_threads`` 0 lets it use every core (right for one job at a time)."""
    from parley_engine.speech import SpeechRecognizer  # heavy (Whisper): imported only where it runs

    recognizer: Recognizer = SpeechRecognizer(cpu_threads=cpu_threads)
    return recognizer


def real_analyzer() -> Analyzer:
    from parley_engine.analysis import TextAnalyzer  # heavy (spaCy): imported only where it runs

    analyzer: Analyzer = TextAnalyzer()
    return analyzer


def real_redactor() -> UtteranceRedactor:
    from parley_engine.redaction.redactor import Redactor  # heavy (Presidio, its own spaCy pipeline)

    redactor: UtteranceRedactor = Redactor()
    return redactor


def redacted_audio_with(
    source: Path, spans: list[tuple[float, float]], target: Path, substitution: AudioSubstitution
) -> None:
    """``redactAudio``'s copy of a recording; the decoder's ``MediaError`` becomes ``JobInputError``."""
    from parley_engine.speech.media import MediaError
    from parley_engine.speech.redacted_audio import write_redacted_audio

    try:
        write_redacted_audio(source, spans, target, substitution=substitution)
    except MediaError as error:
        target.unlink(missing_ok=True)
        raise JobInputError(f"could not write the redacted audio: {error}") from None


def transcribe_with(
    recognizer: Recognizer, path: Path, options: SpeechOptions, first_message_index: int, id_prefix: str
) -> list[Utterance]:
    """Transcribe, turning the recognizer's ``MediaError`` into ``JobInputError`` (which pickles across processes)."""
    from parley_engine.speech.media import MediaError

    try:
        return recognizer.transcribe(path, options, first_message_index=first_message_index, id_prefix=id_prefix)
    except MediaError as error:
        # The caller sees the reason; where the engine keeps its files is none of their business.
        reason = (str(error) or type(error).__name__).replace(str(path), "the media file")
        raise JobInputError(reason) from None


class ThreadWorkers:
    """Runs one lazily built recognizer and analyzer on threads."""

    def __init__(
        self,
        recognizer_factory: Callable[[], Recognizer] = real_recognizer,
        analyzer_factory: Callable[[], Analyzer] = real_analyzer,
        redactor_factory: Callable[[], UtteranceRedactor] = real_redactor,
    ) -> None:
        self._recognizer_factory, self._analyzer_factory = recognizer_factory, analyzer_factory
        self._redactor_factory = redactor_factory
        self._recognizer: Recognizer | None = None
        self._analyzer: Analyzer | None = None
        self._redactor: UtteranceRedactor | None = None
        self._building = threading.Lock()

    def _get_recognizer(self) -> Recognizer:
        with self._building:
            if self._recognizer is None:
                self._recognizer = self._recognizer_factory()
            return self._recognizer

    def _get_analyzer(self) -> Analyzer:
        with self._building:
            if self._analyzer is None:
                self._analyzer = self._analyzer_factory()
            return self._analyzer

    async def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int, id_prefix: str
    ) -> list[Utterance]:
        return await asyncio.to_thread(
            lambda: transcribe_with(self._get_recognizer(), path, options, first_message_index, id_prefix)
        )

    async def analyze(
        self,
        utterances: Sequence[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights:
        return await asyncio.to_thread(
            lambda: self._get_analyzer().analyze(
                list(utterances), options, conversation_id=conversation_id, conversation_start=conversation_start
            )
        )

    def _get_redactor(self) -> UtteranceRedactor:
        with self._building:
            if self._redactor is None:
                self._redactor = self._redactor_factory()
            return self._redactor

    async def redact(
        self, utterances: Sequence[Utterance], options: RedactionOptions, *, hash_key: bytes
    ) -> list[Utterance]:
        return await asyncio.to_thread(lambda: self._get_redactor().redact(utterances, options, hash_key=hash_key))

    async def write_redacted_audio(
        self, source: Path, spans: Sequence[tuple[float, float]], target: Path, substitution: AudioSubstitution
    ) -> None:
        await asyncio.to_thread(redacted_audio_with, source, list(spans), target, substitution)

    def close(self) -> None:
        return None


# One recognizer and one analyzer per worker process, built on first use.
_process_recognizer: Recognizer | None = None
_process_analyzer: Analyzer | None = None
_process_redactor: UtteranceRedactor | None = None
_process_cpu_threads = 0


def _initialize_worker_process(cpu_threads: int, engine_pid: int) -> None:
    global _process_recognizer, _process_analyzer, _process_cpu_threads
    die_with_parent(engine_pid)
    _process_recognizer = None
    _process_analyzer = None
    _process_cpu_threads = cpu_threads


def _transcribe_in_worker(
    path: Path, options: SpeechOptions, first_message_index: int, id_prefix: str
) -> list[Utterance]:
    global _process_recognizer
    if _process_recognizer is None:
        _process_recognizer = real_recognizer(_process_cpu_threads)
    return transcribe_with(_process_recognizer, path, options, first_message_index, id_prefix)


def analyze_in_worker(
    utterances: list[Utterance], options: AnalysisOptions, conversation_id: str, conversation_start: datetime
) -> ConversationInsights:
    """The analysis, run in a worker process (the Async jobs' or the live streams'), with one analyzer per process."""
    global _process_analyzer
    if _process_analyzer is None:
        _process_analyzer = real_analyzer()
    return _process_analyzer.analyze(
        utterances, options, conversation_id=conversation_id, conversation_start=conversation_start
    )


def redact_in_worker(utterances: list[Utterance], options: RedactionOptions, hash_key: bytes) -> list[Utterance]:
    """Redaction, run in a worker process (the Async jobs' or the live streams'), with one redactor per process."""
    global _process_redactor
    if _process_redactor is None:
        _process_redactor = real_redactor()
    return _process_redactor.redact(utterances, options, hash_key=hash_key)


class ProcessPoolWorkers:
    """The real recognizer and analyzer in ``max_workers`` spawned processes."""

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent runs an event loop and threads that a forked child must not inherit.
        return ProcessPoolExecutor(
            max_workers=self._max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_initialize_worker_process,
            # Share the cores between the worker processes instead of each one claiming them all.
            initargs=(max(1, usable_cpu_count() // self._max_workers), os.getpid()),
        )

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except BrokenProcessPool:
            # A worker died (out of memory, say): replace the pool so later jobs still run, and fail this one.
            log.error("a worker process died; starting a new pool")
            if self._pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise

    async def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int, id_prefix: str
    ) -> list[Utterance]:
        return await self._run(_transcribe_in_worker, path, options, first_message_index, id_prefix)

    async def analyze(
        self,
        utterances: Sequence[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights:
        return await self._run(analyze_in_worker, list(utterances), options, conversation_id, conversation_start)

    async def redact(
        self, utterances: Sequence[Utterance], options: RedactionOptions, *, hash_key: bytes
    ) -> list[Utterance]:
        return await self._run(redact_in_worker, list(utterances), options, hash_key)

    async def write_redacted_audio(
        self, source: Path, spans: Sequence[tuple[float, float]], target: Path, substitution: AudioSubstitution
    ) -> None:
        # Decoding and re-encoding a whole recording is CPU work: in a worker, not the server's event loop process.
        await self._run(redacted_audio_with, source, list(spans), target, substitution)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
