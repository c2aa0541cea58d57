"""Which offsets of each jobs-topic partition are safe to commit: never past a job that is still pending.

Committing the oldest pending job's offset means a restarted or newly assigned job-watcher re-reads every job
that was still pending (and the ``JobResolved`` markers after them) and so rebuilds its state from Kafka.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class PartitionProgress:
    next_offset: int = 0
    end_at_assignment: int = 0
    _pending: list[int] = field(default_factory=list)
    _settled: set[int] = field(default_factory=set)

    @property
    def replaying(self) -> bool:
        """Still reading records that were written before this watcher took the partition over."""
        return self.next_offset < self.end_at_assignment

    def seen(self, offset: int) -> None:
        self.next_offset = max(self.next_offset, offset + 1)

    def hold(self, offset: int) -> None:
        heapq.heappush(self._pending, offset)

    def release(self, offset: int) -> None:
        self._settled.add(offset)

    def safe_offset(self) -> int:
        while self._pending and self._pending[0] in self._settled:
            self._settled.discard(heapq.heappop(self._pending))
        return self._pending[0] if self._pending else self.next_offset
