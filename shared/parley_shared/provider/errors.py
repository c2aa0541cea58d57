"""What can go wrong when talking to the provider, as exceptions callers can branch on.

Messages name the call (method and path) and what the provider said; they never carry the app secret or the
access token, and never the query string (upload options may hold webhook URLs).
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every error raised by the provider client."""


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (401 on token generation, or on a freshly generated token)."""


class ProviderUnavailable(ProviderError):
    """A transient failure the client could not (or must not) retry away; the caller decides what to do.

    ``status`` is the last HTTP status seen (``None`` when the last failure was a timeout or a connection
    error). ``retry_after`` is the provider's last ``Retry-After`` in seconds, when it sent one.
    ``may_have_been_processed`` is true when a non-idempotent submission failed in a way (read timeout,
    500, broken stream) that leaves open whether the provider created a job.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        attempts: int,
        retry_after: float | None = None,
        may_have_been_processed: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after
        self.may_have_been_processed = may_have_been_processed


class ProviderRejected(ProviderError):
    """A permanent 4xx (other than 401/404/429): retrying the same request will not help."""

    def __init__(self, message: str, *, status: int, provider_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.provider_message = provider_message


class ConversationNotFound(ProviderError):
    """404 for a conversation: unknown or deleted ``conversationId``."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"the provider has no conversation {conversation_id!r}")
        self.conversation_id = conversation_id


class JobNotFound(ProviderError):
    """404 for a job: unknown ``jobId`` (or one the provider has forgotten)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the provider has no job {job_id!r}")
        self.job_id = job_id


class UnexpectedProviderResponse(ProviderError):
    """A 2xx whose body does not match the contract (not JSON, missing fields, unknown job status)."""
