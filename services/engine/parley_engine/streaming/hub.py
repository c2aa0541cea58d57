"""The engine's live streams: admission against the stream limit, which stream each ``connectionId`` names,
outgoing frame queues, and the subscribers (``/v1/subscribe/{connectionId}``) who receive a copy of every frame a
connection is sent.

A ``connectionId`` is served by one socket at a time: a second live socket on it is refused (``ConnectionInUse``),
since two audio sources cannot safely feed one recogniser. A stream whose socket dropped with a reconnect window
(``noConnectionTimeout``) waits in the hub, still holding its job, until a new socket claims it or the window ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

ENDED_REMEMBERED = 10_000


class TooManyStreams(Exception):
    """The engine already serves its limit of live streams."""


class ConnectionInUse(Exception):
    """Another socket is serving this connectionId (or its stream is being completed)."""


class WaitingStream(Protocol):
    async def complete(self) -> None:
        """End the stream as a timeout does: its last results and the closing frames (to its subscribers)."""


StreamT = TypeVar("StreamT", bound=WaitingStream)


@dataclass
class _Waiting(Generic[StreamT]):
    stream: StreamT
    timer: asyncio.Task[None] | None = None
    end_now: asyncio.Event = field(default_factory=asyncio.Event)


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


class StreamHub(Generic[StreamT]):
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._active: set[object] = set()
        self._subscribers: dict[str, set[Outbox]] = defaultdict(set)
        self._served: set[str] = set()
        self._waiting: dict[str, _Waiting[StreamT]] = {}
        self._timers: set[asyncio.Task[None]] = set()
        # connectionIds whose stream has ended (the newest ENDED_REMEMBERED): a subscriber arriving after the end (a
        # call refused within milliseconds of its 201) is closed at once instead of waiting for frames forever.
        self._ended: OrderedDict[str, None] = OrderedDict()

    @property
    def active_streams(self) -> int:
        return len(self._active) + len(self._waiting)

    def admit(self, connection_id: str) -> object:
        """A ticket for one socket; ``TooManyStreams`` past the limit, where a stream waiting for its client to come
        back counts as one (and a socket on its ``connectionId`` is let in to take it back). Give it back with
        ``release``."""
        if connection_id not in self._waiting and self.active_streams >= self.max_streams:
            raise TooManyStreams(self.max_streams)
        ticket = object()
        self._active.add(ticket)
        return ticket

    def release(self, ticket: object) -> None:
        self._active.discard(ticket)

    def claim(self, connection_id: str) -> StreamT | None:
        """Serve ``connection_id`` from the calling socket: the stream waiting on it, taken back, or None for a new
        one. ``ConnectionInUse`` while another socket serves it. End with ``wait_for_reconnect`` or ``stream_ended``."""
        if connection_id in self._served:
            raise ConnectionInUse(connection_id)
        self._served.add(connection_id)
        self._ended.pop(connection_id, None)
        waiting = self._waiting.pop(connection_id, None)
        if waiting is None:
            return None
        if waiting.timer is not None:
            waiting.timer.cancel()
        return waiting.stream

    def wait_for_reconnect(self, connection_id: str, stream: StreamT, seconds: float) -> None:
        """The socket serving ``connection_id`` is gone: keep its stream for ``seconds`` for a socket to ``claim``,
        then end it (subscribers stay until then)."""
        self._served.discard(connection_id)
        waiting = _Waiting(stream)
        self._waiting[connection_id] = waiting
        waiting.timer = asyncio.create_task(
            self._end_unclaimed(connection_id, waiting, seconds), name=f"stream-{connection_id}-reconnect-window"
        )
        self._timers.add(waiting.timer)
        waiting.timer.add_done_callback(self._timers.discard)

    async def _end_unclaimed(self, connection_id: str, waiting: _Waiting[StreamT], seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await waiting.end_now.wait()
        # From here the stream is past taking back: its connectionId counts as served until it has ended.
        del self._waiting[connection_id]
        self._served.add(connection_id)
        try:
            await waiting.stream.complete()
        finally:
            self.stream_ended(connection_id)

    async def end_waiting_streams(self) -> None:
        """The engine is stopping: end every stream still waiting for its client, without waiting out its window."""
        for waiting in list(self._waiting.values()):
            waiting.end_now.set()
        await asyncio.gather(*self._timers, return_exceptions=True)

    def subscribe(self, connection_id: str, outbox: Outbox) -> bool:
        """Send ``outbox`` a copy of the stream's frames, from now until it ends; False if it has ended already."""
        if connection_id in self._ended:
            return False
        self._subscribers[connection_id].add(outbox)
        return True

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
        """The stream on ``connection_id`` is over: the id is free again and its subscribers are closed."""
        self._served.discard(connection_id)
        self._ended[connection_id] = None
        if len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        for outbox in list(self._subscribers.get(connection_id, ())):
            outbox.close()


class StreamSink:
    """The ``FrameSink`` of one streaming connection: to its own client (none while it waits for one to come back),
    and a copy to its subscribers."""

    def __init__(self, outbox: Outbox | None, hub: StreamHub[Any], connection_id: str) -> None:
        self._outbox, self._hub, self._connection_id = outbox, hub, connection_id

    def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        if self._outbox is not None:
            self._outbox.send_text(text)
        self._hub.publish(self._connection_id, text)
