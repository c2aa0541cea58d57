"""ingest with a provider that ignores Idempotency-Key: the job of a submission whose answer was lost is dropped
knowingly (its conversation deleted, logged, counted) once the request's resubmission is accepted."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from parley_ingest.ledger import RequestLedger
from parley_ingest.reconcile import REQUEST_ID_METADATA, OrphanSweeper, marked
from parley_ingest.submission import Submitter
from parley_shared.events import MediaKind, ProcessRequested
from parley_shared.provider import ConversationNotFound, ProviderClient, ProviderUnavailable
from parley_shared.settings import ProviderSettings
from prometheus_client import REGISTRY

from tests.support.engine import engine_settings, running_engine
from tests.support.provider_fakes import FakeAsyncApi, KeylessProvider

MESSAGES = [{"payload": {"content": "Shall we ship on Friday?"}, "from": {"name": "Ann"}}]


def request(request_id: str, **options: object) -> ProcessRequested:
    return ProcessRequested(request_id=request_id, kind=MediaKind.TEXT, messages=MESSAGES, options=options)


def orphans_counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("parley_orphans_total", {"service": "ingest", "outcome": outcome})
    return value or 0.0


def submitter(provider: KeylessProvider) -> Submitter:
    return Submitter(provider, RequestLedger(), webhook_url=None, orphans=OrphanSweeper(provider, page_size=2))


def test_the_request_id_joins_the_callers_metadata() -> None:
    assert marked({"name": "x", "metadata": {"team": "sales"}}, "req-1")["metadata"] == {
        "team": "sales",
        REQUEST_ID_METADATA: "req-1",
    }
    assert marked({"metadata": "not an object"}, "req-2")["metadata"] == {REQUEST_ID_METADATA: "req-2"}


async def test_the_conversation_of_an_unheard_submission_is_deleted_when_the_retry_is_accepted() -> None:
    provider = KeylessProvider()
    ingest = submitter(provider)
    for n in range(3):  # other requests' conversations around it, so the search pages
        await ingest.submit(request(f"other-{n}"))
    dropped_before = orphans_counted("dropped")
    provider.lose_answers = 1

    with pytest.raises(ProviderUnavailable):
        await ingest.submit(request("req-lost", metadata={"team": "sales"}))
    [unheard] = [cid for cid, meta in provider.conversations.items() if meta.get(REQUEST_ID_METADATA) == "req-lost"]
    for n in range(3, 5):
        await ingest.submit(request(f"other-{n}"))
    retried, created = await ingest.submit(request("req-lost", metadata={"team": "sales"}))

    assert created and retried.conversation_id != unheard
    assert provider.deleted == [unheard]
    assert provider.conversations[retried.conversation_id] == {"team": "sales", REQUEST_ID_METADATA: "req-lost"}
    assert orphans_counted("dropped") == dropped_before + 1
    # Only the uncertain request was looked up, and only once.
    assert provider.listings >= 1
    listings = provider.listings
    await ingest.submit(request("other-6"))
    assert provider.listings == listings


async def test_a_provider_honouring_the_key_leaves_nothing_to_drop() -> None:
    provider = KeylessProvider(lose_answers=1)
    ingest = submitter(provider)
    with pytest.raises(ProviderUnavailable):
        await ingest.submit(request("req-1"))
    # From now on the provider answers a repeated key with the first job, as the engine does.
    honouring = FakeAsyncApi()
    first = next(iter(provider.conversations))
    honouring.jobs_by_key["req-1"] = provider._answers[0]
    sweeper = OrphanSweeper(provider)
    sweeper.uncertain("req-1")
    again = Submitter(honouring, RequestLedger(), webhook_url=None, orphans=sweeper)

    submitted, _ = await again.submit(request("req-1"))

    assert submitted.conversation_id == first
    assert provider.deleted == []


async def test_a_sweep_that_cannot_look_is_counted_and_the_submission_still_succeeds() -> None:
    provider = KeylessProvider(lose_answers=1, listing_fails=True)
    ingest = submitter(provider)
    unreconciled_before = orphans_counted("unreconciled")
    with pytest.raises(ProviderUnavailable):
        await ingest.submit(request("req-1"))

    submitted, created = await ingest.submit(request("req-1"))

    assert created and submitted.conversation_id in provider.conversations
    assert provider.deleted == []
    assert orphans_counted("unreconciled") == unreconciled_before + 1


async def test_a_failure_the_provider_cannot_have_acted_on_is_not_swept() -> None:
    provider = KeylessProvider()
    ingest = submitter(provider)
    provider.error = ProviderUnavailable("connection refused", status=None, attempts=6, may_have_been_processed=False)
    with pytest.raises(ProviderUnavailable):
        await ingest.submit(request("req-1"))
    await ingest.submit(request("req-1"))
    assert provider.listings == 0


async def test_the_provider_client_finds_and_deletes_marked_conversations_on_the_engine(tmp_path: Path) -> None:
    """The calls the sweep makes, against the real engine app: metadata kept, listed newest first, deleted."""
    settings = engine_settings(tmp_path)
    async with running_engine(settings) as engine:
        provider = ProviderClient(
            ProviderSettings(url="http://engine", app_id=settings.app_id, app_secret=settings.app_secret),
            transport=httpx.ASGITransport(app=engine.app),
        )
        async with provider:
            body = marked({"messages": MESSAGES, "metadata": {"team": "sales"}}, "req-engine")
            first = await provider.submit_text(body)
            second = await provider.submit_text(marked({"messages": MESSAGES}, "req-other"))
            listed = await provider.list_conversations(limit=10)
            await provider.delete_conversation(first.conversation_id)
            after = [c.id for c in await provider.list_conversations(limit=10)]
            with pytest.raises(ConversationNotFound):
                await provider.delete_conversation(first.conversation_id)

    marks = {c.id: c.metadata.get(REQUEST_ID_METADATA) for c in listed}
    assert marks[first.conversation_id] == "req-engine" and marks[second.conversation_id] == "req-other"
    assert next(c for c in listed if c.id == first.conversation_id).metadata["team"] == "sales"
    assert after == [second.conversation_id]
