"""insight-fetcher's settings: the shared pieces plus how much it reads at once."""

from __future__ import annotations

import socket

from parley_shared.settings import ParleySettings
from pydantic import Field


class InsightFetcherSettings(ParleySettings):
    http_host: str = Field("127.0.0.1", description="address of the health endpoints")
    http_port: int = Field(8703, description="port of the health endpoints")
    group_id: str = Field("parley-insight-fetcher", description="consumer group on the completions topic")
    instance_id: str = Field(
        default_factory=socket.gethostname, description="unique per replica; names the transactional producer"
    )
    conversations_in_flight: int = Field(64, ge=1, description="conversations fetched at once")
    reads_per_conversation: int = Field(9, ge=1, description="Conversation API reads in flight per conversation")
