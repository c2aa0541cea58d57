"""Reconciling submissions whose outcome ingest never heard, for providers that ignore ``Idempotency-Key``.

A submission that times out after the request went out may have created a job at the provider. ingest submits it
again with the same ``Idempotency-Key``: the engine answers with the first job, so nothing is orphaned. A provider
that ignores the key creates a second job, and the first would be left running with nobody watching it.

Every submission therefore carries its requestId in the conversation's metadata (``parleyRequestId``). After the
resubmission of an uncertain request is accepted, ``OrphanSweeper`` looks through the provider's newest
conversations (``GET /v1/conversations``, newest first, a bounded number of pages) for others carrying the same
requestId and deletes them (``DELETE /v1/conversations/{id}``): the first job is dropped knowingly, logged and
counted (``parley_orphans_total``), never silently kept. A sweep that cannot finish is logged and counted too.

Limits: the uncertain requests are remembered by the replica that saw the timeout (a retry through another replica
is not swept), only the newest ``pages`` x ``page_size`` conversations are looked at, and a provider that does not
keep submission metadata leaves nothing to find.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from parley_shared.provider import ConversationNotFound, ProviderError
from parley_shared.provider.ports import ConversationCleanup

from parley_ingest.metrics import orphan_swept

logger = logging.getLogger("parley.ingest")

REQUEST_ID_METADATA = "parleyRequestId"


def marked(body: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The submission body with its requestId added to the conversation's metadata (the caller's kept)."""
    metadata = body.get("metadata")
    merged = {**metadata} if isinstance(metadata, dict) else {}
    merged[REQUEST_ID_METADATA] = request_id
    return {**body, "metadata": merged}


class OrphanSweeper:
    """Remembers requests whose submission may have created a job unheard of, and drops such jobs' conversations
    once the request is finally accepted."""

    def __init__(
        self, conversations: ConversationCleanup, *, pages: int = 5, page_size: int = 100, capacity: int = 10_000
    ) -> None:
        self._conversations = conversations
        self._pages = pages
        self._page_size = page_size
        self._capacity = capacity
        self._uncertain: OrderedDict[str, float] = OrderedDict()

    def uncertain(self, request_id: str) -> None:
        """A submission of ``request_id`` failed in a way that leaves open whether the provider created a job."""
        self._uncertain[request_id] = time.time()
        self._uncertain.move_to_end(request_id)
        while len(self._uncertain) > self._capacity:
            self._uncertain.popitem(last=False)

    def is_uncertain(self, request_id: str) -> bool:
        return request_id in self._uncertain

    async def accepted(self, request_id: str, conversation_id: str) -> list[str]:
        """``request_id`` now has its job in ``conversation_id``: delete any other conversation carrying the same
        requestId (the earlier attempt's). Returns the deleted ids; never raises (a failed sweep is logged)."""
        if self._uncertain.pop(request_id, None) is None:
            return []
        try:
            orphans = await self._find(request_id, keep=conversation_id)
        except ProviderError as error:
            logger.warning("could not look for an orphaned job of request %s (%s)", request_id, error)
            orphan_swept("unreconciled")
            return []
        dropped = []
        for orphan in orphans:
            try:
                await self._conversations.delete_conversation(orphan)
            except ConversationNotFound:
                pass  # gone already
            except ProviderError as error:
                logger.warning(
                    "could not delete conversation %s, orphaned by request %s (%s)", orphan, request_id, error
                )
                orphan_swept("unreconciled")
                continue
            logger.warning(
                "deleted conversation %s: an earlier submission of request %s created it, unheard of (its job is"
                " dropped; the request's job is in conversation %s)",
                orphan,
                request_id,
                conversation_id,
            )
            orphan_swept("dropped")
            dropped.append(orphan)
        return dropped

    async def _find(self, request_id: str, *, keep: str) -> list[str]:
        found = []
        for page in range(self._pages):
            conversations = await self._conversations.list_conversations(
                limit=self._page_size, offset=page * self._page_size
            )
            found += [c.id for c in conversations if c.metadata.get(REQUEST_ID_METADATA) == request_id and c.id != keep]
            if len(conversations) < self._page_size:
                break
        return found
