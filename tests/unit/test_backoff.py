"""RetryPolicy and Retry-After parsing: pure functions, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from parley_shared.provider import RetryPolicy, parse_retry_after


def policy(draw: float = 1.0, **overrides: float) -> RetryPolicy:
    settings: dict[str, float] = {"base_seconds": 0.2, "max_seconds": 10.0, "max_attempts": 6}
    settings.update(overrides)
    return RetryPolicy(
        base_seconds=settings["base_seconds"],
        max_seconds=settings["max_seconds"],
        max_attempts=int(settings["max_attempts"]),
        random=lambda: draw,
    )


def test_ceiling_doubles_from_base_and_stops_at_max() -> None:
    ceilings = [policy().backoff_ceiling(attempt) for attempt in range(1, 9)]
    assert ceilings == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]


def test_full_jitter_scales_the_whole_ceiling() -> None:
    assert policy(draw=0.0).delay(3) == 0.0
    assert policy(draw=0.5).delay(3) == pytest.approx(0.4)
    assert policy(draw=1.0).delay(3) == pytest.approx(0.8)


def test_retry_after_wins_over_backoff() -> None:
    assert policy(draw=0.0).delay(1, retry_after=7.0) == 7.0


def test_retry_after_is_clamped_to_the_policy_cap_and_to_zero() -> None:
    capped = RetryPolicy(base_seconds=0.2, max_seconds=10, max_attempts=3, max_retry_after_seconds=30)
    assert capped.delay(1, retry_after=3600) == 30
    assert capped.delay(1, retry_after=-5) == 0


def test_attempt_budget() -> None:
    three = policy(max_attempts=3)
    assert [three.may_retry(attempt) for attempt in (1, 2, 3)] == [True, True, False]


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        policy().delay(0)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert policy().delay(10_000) == 10.0


@given(
    attempt=st.integers(min_value=1, max_value=200),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_always_within_zero_and_ceiling(attempt: int, draw: float) -> None:
    jittered = policy(draw=draw)
    delay = jittered.delay(attempt)
    assert 0.0 <= delay <= jittered.backoff_ceiling(attempt) <= 10.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 1.5 ", 1.5), ("0", 0.0), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize("header", ["inf", "nan", "-inf"])
def test_parse_retry_after_refuses_non_finite_numbers(header: str) -> None:
    assert parse_retry_after(header) is None


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 05 Jan 2026 12:00:45 GMT", now=now) == 45.0


def test_parse_retry_after_http_date_in_the_past_means_now() -> None:
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 05 Jan 2026 11:00:00 GMT", now=now) == 0.0
