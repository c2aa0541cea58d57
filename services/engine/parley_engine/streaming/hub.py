"""The engine's live streams: admission against the stream limit, outgoing frame queues, and the subscribers
(``/v1/subscribe/{connectionId}``) who receive a copy of every frame a connection is sent.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from typing import Any, Protocol


class TooManyStreams(Exception):
    """The engine already serves its limit of live streams."""


class SlowReader(Exception):
    """A client that does not read its frames fast enough."""


class TextSocket(Protocol):
    async def send_text(self, data: str) -> None: ...


class Outbox:
    """One client's outgoing text frames: queued without blocking, written by ``run`` in order.

    A client that lets ``limit`` frames pile up, or takes longer than ``send_timeout`` to take one, is a slow
    reader: ``run`` raises ``SlowReader`` so its connection can be closed without holding up anything else.
    """

    def __init__(self, limit: int, send_timeout: float) -> None:
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self._limit, self._send_timeout = limit, send_timeout
        self._closing = False
        self.overflowed = False

    def send_text(self, text: str) -> None:
        if self._closing:
            return
        if len(self._frames) >= self._limit:
            self.overflowed = True
        else:
            self._frames.append(text)
        self._ready.set()

    def close(self) -> None:
        """Write what is queued, then let ``run`` return."""
        self._closing = True
        self._ready.set()

    async def run(self, socket: TextSocket) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._frames:
                if self.overflowed:
                    raise SlowReader(f"more than {self._limit} frames waiting")
                text = self._frames.popleft()
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await socket.send_text(text)
                except TimeoutError:
                    raise SlowReader(f"a frame took longer than {self._send_timeout} s to send") from None
            if self.overflowed:
                raise SlowReader(f"more than {self._limit} frames waiting")
            if self._closing:
                return


class StreamHub:
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._active: set[object] = set()
        self._subscribers: dict[str, set[Outbox]] = defaultdict(set)

    @property
    def active_streams(self) -> int:
        return len(self._active)

    def admit(self) -> object:
        """A ticket for one stream; ``TooManyStreams`` past the limit. Give it back with ``release``."""
        if len(self._active) >= self.max_streams:
            raise TooManyStreams(self.max_streams)
        ticket = object()
        self._active.add(ticket)
        return ticket

    def release(self, ticket: object) -> None:
        self._active.discard(ticket)

    def subscribe(self, connection_id: str, outbox: Outbox) -> None:
        self._subscribers[connection_id].add(outbox)

    def unsubscribe(self, connection_id: str, outbox: Outbox) -> None:
        listeners = self._subscribers.get(connection_id)
        if listeners is not None:
            listeners.discard(outbox)
            if not listeners:
                del self._subscribers[connection_id]

    def publish(self, connection_id: str, text: str) -> None:
        for outbox in list(self._subscribers.get(connection_id, ())):
            outbox.send_text(text)

    def stream_ended(self, connection_id: str) -> None:
        for outbox in list(self._subscribers.get(connection_id, ())):
            outbox.close()


class StreamSink:
    """The ``FrameSink`` of one streaming connection: to its own client, and a copy to its subscribers."""

    def __init__(self, outbox: Outbox, hub: StreamHub, connection_id: str) -> None:
        self._outbox, self._hub, self._connection_id = outbox, hub, connection_id

    def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        self._outbox.send_text(text)
        self._hub.publish(self._connection_id, text)
