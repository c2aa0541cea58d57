"""The retry delay policy every retry in Parley follows: exponential backoff with full jitter.

Used by the provider client (where the provider's ``Retry-After`` wins) and by the consume step's retries of
transient failures. Pure (randomness is injectable) so it can be tested without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

# A Retry-After beyond this is clamped: a buggy or hostile header must not park a worker for hours.
DEFAULT_MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait after failed attempt number ``attempt`` (1-based), and how many attempts in all.

    Full jitter (a uniform draw in ``[0, min(max, base * 2**(attempt-1))]``) spreads out the retries of many
    workers that failed together, which is what a 429 storm or a provider restart produces.
    """

    base_seconds: float
    max_seconds: float
    max_attempts: int
    max_retry_after_seconds: float = DEFAULT_MAX_RETRY_AFTER_SECONDS
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def backoff_ceiling(self, attempt: int) -> float:
        """The upper bound of the jittered delay after failed attempt ``attempt``."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # Cap the exponent first so huge attempt numbers cannot overflow a float.
        exponent = min(attempt - 1, 62)
        return min(self.max_seconds, self.base_seconds * (2**exponent))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before the next attempt; ``retry_after`` (from the provider) wins when given."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_seconds)
        return self.random() * self.backoff_ceiling(attempt)

    def may_retry(self, attempt: int) -> bool:
        """Whether another attempt is allowed after failed attempt ``attempt``."""
        return attempt < self.max_attempts
