"""Client for the Symbl-compatible conversation-intelligence provider (the engine or a compatible API)."""

from parley_shared.provider.client import (
    DEFAULT_INSIGHT_CONCURRENCY,
    MediaKind,
    ProviderClient,
    ResponseObservation,
    ResponseObserver,
    encode_upload_options,
    token_refresh_margin,
)
from parley_shared.provider.errors import (
    ConversationNotFound,
    JobNotFound,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    UnexpectedProviderResponse,
)
from parley_shared.provider.models import (
    AccessToken,
    ConversationSummary,
    InsightEndpoint,
    JobState,
    JobStatus,
    ProcessResponse,
)
from parley_shared.provider.retry import parse_retry_after
from parley_shared.retry import RetryPolicy

__all__ = [
    "DEFAULT_INSIGHT_CONCURRENCY",
    "AccessToken",
    "ConversationNotFound",
    "ConversationSummary",
    "InsightEndpoint",
    "JobNotFound",
    "JobState",
    "JobStatus",
    "MediaKind",
    "ProcessResponse",
    "ProviderAuthError",
    "ProviderClient",
    "ProviderError",
    "ProviderRejected",
    "ProviderUnavailable",
    "ResponseObservation",
    "ResponseObserver",
    "RetryPolicy",
    "UnexpectedProviderResponse",
    "encode_upload_options",
    "parse_retry_after",
    "token_refresh_margin",
]
