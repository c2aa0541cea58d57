"""What the routes are handed: typed dependencies on the parts the engine's lifespan built (``app.py``).

A route names what it needs (``jobs: JobsDep``); only ``started_components`` knows where the parts are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from parley_shared.http_errors import ApiProblem

from parley_engine.jobs import JobRunner
from parley_engine.settings import EngineSettings
from parley_engine.store import ConversationStore, JobStore, Store
from parley_engine.streaming.service import StreamingService
from parley_engine.telephony.calls import TelephonyCalls
from parley_engine.tokens import TokenAuthority
from parley_engine.webhooks import WebhookSender
from parley_engine.workers import AnalysisWorkers


@dataclass(frozen=True)
class EngineComponents:
    """Everything the lifespan starts and the routes use, built once per app."""

    settings: EngineSettings
    store: Store
    workers: AnalysisWorkers
    job_runner: JobRunner
    webhook_sender: WebhookSender
    token_authority: TokenAuthority
    streaming: StreamingService
    telephony: TelephonyCalls


def started_components(request: Request) -> EngineComponents | None:
    """The engine's parts; None before the lifespan has started them."""
    components: EngineComponents | None = getattr(request.app.state, "components", None)
    return components


def engine_components(
    started: Annotated[EngineComponents | None, Depends(started_components)],
) -> EngineComponents:
    if started is None:
        raise ApiProblem(503, "the engine has not started")
    return started


ComponentsDep = Annotated[EngineComponents, Depends(engine_components)]


def _settings(components: ComponentsDep) -> EngineSettings:
    return components.settings


def _jobs(components: ComponentsDep) -> JobStore:
    return components.store.jobs


def _conversations(components: ComponentsDep) -> ConversationStore:
    return components.store.conversations


def _workers(components: ComponentsDep) -> AnalysisWorkers:
    return components.workers


def _job_runner(components: ComponentsDep) -> JobRunner:
    return components.job_runner


def _webhook_sender(components: ComponentsDep) -> WebhookSender:
    return components.webhook_sender


def _token_authority(components: ComponentsDep) -> TokenAuthority:
    return components.token_authority


SettingsDep = Annotated[EngineSettings, Depends(_settings)]
JobsDep = Annotated[JobStore, Depends(_jobs)]
ConversationsDep = Annotated[ConversationStore, Depends(_conversations)]
WorkersDep = Annotated[AnalysisWorkers, Depends(_workers)]
JobRunnerDep = Annotated[JobRunner, Depends(_job_runner)]
WebhookSenderDep = Annotated[WebhookSender, Depends(_webhook_sender)]
TokenAuthorityDep = Annotated[TokenAuthority, Depends(_token_authority)]
MaybeStartedDep = Annotated[EngineComponents | None, Depends(started_components)]
