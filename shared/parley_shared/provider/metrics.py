"""``parley_provider_errors_total``: the provider calls that did not answer 2xx, counted by the client's hook."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from parley_shared.metrics import series
from parley_shared.provider.client import ResponseObservation

PROVIDER_ERRORS = Counter(
    "parley_provider_errors_total",
    "Provider call attempts that did not answer 2xx: the HTTP status, or 'timeout' / 'connection_error'"
    " (retried attempts count each time)",
    ["service", "status_code"],
)


def provider_error_counter(service: str) -> Callable[[ResponseObservation], None]:
    """A ``ProviderClient(on_response=…)`` hook counting the attempts that were not a 2xx."""

    def observe(attempt: ResponseObservation) -> None:
        if attempt.status is not None and 200 <= attempt.status < 300:
            return
        if attempt.status is not None:
            status_code = str(attempt.status)
        else:
            status_code = "timeout" if "Timeout" in (attempt.error or "") else "connection_error"
        series(PROVIDER_ERRORS, service, status_code).inc()

    return observe
