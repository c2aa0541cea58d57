"""Where live streams' CPU-bound work runs: decoding utterances and analysing the newest sentences.

Live streams get their own workers, apart from the Async jobs' (``parley_engine.workers``): a long upload being
transcribed must never hold up a live caption. ``LiveProcessWorkers`` (the default) runs a small pool of spawned
processes, each loading one ``UtteranceDecoder`` (one CPU thread), one ``TextAnalyzer`` and, for redacted streams, one
``Redactor`` on first use; the pool size bounds how much of the machine streams may take. ``LiveThreadWorkers`` runs
given objects on threads: for tests and light fakes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from parley_engine.conversation import AnalysisOptions, ConversationInsights, Utterance
from parley_engine.processes import die_with_parent
from parley_engine.redaction.options import RedactionOptions
from parley_engine.speech.live import LiveDecodeOptions
from parley_engine.speech.sentences import RecognizedWord
from parley_engine.workers import (
    Analyzer,
    UtteranceRedactor,
    analyze_in_worker,
    real_analyzer,
    real_redactor,
    redact_in_worker,
)

T = TypeVar("T")
Samples = npt.NDArray[np.float32]


class Decoder(Protocol):
    def decode(self, samples: Samples, options: LiveDecodeOptions) -> list[RecognizedWord]: ...


class LiveWorkers(Protocol):
    def prepare(self) -> None:
        """A stream is about to be heard: load what decoding needs now, in the background."""

    async def decode(self, samples: Samples, options: LiveDecodeOptions) -> list[RecognizedWord]: ...

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

    def close(self) -> None: ...


def real_decoder() -> Decoder:
    from parley_engine.speech.live import UtteranceDecoder  # heavy (Whisper): imported only where it runs

    decoder: Decoder = UtteranceDecoder(cpu_threads=1)
    return decoder


class _ExecutorWorkers:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class LiveThreadWorkers(_ExecutorWorkers):
    """Given decoder and analyzer (built lazily, once) on ``threads`` threads."""

    def __init__(
        self,
        decoder_factory: Callable[[], Decoder] = real_decoder,
        analyzer_factory: Callable[[], Analyzer] = real_analyzer,
        threads: int = 2,
        redactor_factory: Callable[[], UtteranceRedactor] = real_redactor,
    ) -> None:
        super().__init__(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="live-stream"))
        self._decoder_factory, self._analyzer_factory = decoder_factory, analyzer_factory
        self._redactor_factory = redactor_factory
        self._decoder: Decoder | None = None
        self._analyzer: Analyzer | None = None
        self._redactor: UtteranceRedactor | None = None
        self._building = asyncio.Lock()

    async def _parts(self) -> tuple[Decoder, Analyzer]:
        async with self._building:
            if self._decoder is None or self._analyzer is None:
                self._decoder, self._analyzer = await asyncio.to_thread(
                    lambda: (self._decoder_factory(), self._analyzer_factory())
                )
            decoder, analyzer = self._decoder, self._analyzer
            assert decoder is not None and analyzer is not None
            return decoder, analyzer

    def prepare(self) -> None:
        """Nothing to load ahead: the injected parts are made on first use, on a thread."""

    async def decode(self, samples: Samples, options: LiveDecodeOptions) -> list[RecognizedWord]:
        decoder, _ = await self._parts()
        return await self._run(decoder.decode, samples, options)

    async def analyze(
        self,
        utterances: Sequence[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights:
        _, analyzer = await self._parts()
        return await self._run(
            lambda: analyzer.analyze(
                list(utterances), options, conversation_id=conversation_id, conversation_start=conversation_start
            )
        )

    async def redact(
        self, utterances: Sequence[Utterance], options: RedactionOptions, *, hash_key: bytes
    ) -> list[Utterance]:
        async with self._building:
            if self._redactor is None:
                self._redactor = await asyncio.to_thread(self._redactor_factory)
            redactor = self._redactor
        return await self._run(lambda: redactor.redact(utterances, options, hash_key=hash_key))


# One decoder per live worker process, built on first use (the analyzer is parley_engine.workers').
_process_decoder: Decoder | None = None


def _decode_in_worker(samples: Samples, options: LiveDecodeOptions) -> list[RecognizedWord]:
    global _process_decoder
    if _process_decoder is None:
        _process_decoder = real_decoder()
    return _process_decoder.decode(samples, options)


def _warm_up() -> None:
    _decode_in_worker(np.zeros(16_000, np.float32), LiveDecodeOptions())


class LiveProcessWorkers(_ExecutorWorkers):
    """The real decoder and analyzer in ``processes`` spawned processes (spawn: the parent runs an event loop)."""

    def __init__(self, processes: int) -> None:
        super().__init__(
            ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        )
        self._processes = processes
        self._warming: asyncio.Task[None] | None = None

    async def warm_up(self) -> None:
        """Load the model in every process now, so no stream's words wait for a cold process."""
        await asyncio.gather(*(self._run(_warm_up) for _ in range(self._processes)))

    def prepare(self) -> None:
        # The processes load Whisper (about 400 MB each) when the first stream starts, not when the engine starts:
        # an engine that serves only the Async API never holds them. Every process is loaded then, so a later
        # stream does not land on a cold one.
        if self._warming is None:
            self._warming = asyncio.create_task(self.warm_up(), name="live-workers-warm-up")

    async def decode(self, samples: Samples, options: LiveDecodeOptions) -> list[RecognizedWord]:
        return await self._run(_decode_in_worker, samples, options)

    def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        super().close()

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
