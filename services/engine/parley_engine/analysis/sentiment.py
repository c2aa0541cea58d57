"""Sentiment with VADER's compound score and Symbl's published buckets."""

from __future__ import annotations

from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# Symbl: below -0.3 is negative, -0.3..0.3 neutral, above 0.3 positive.
NEGATIVE_BELOW = -0.3
POSITIVE_ABOVE = 0.3


def suggested_sentiment(score: float) -> str:
    if score < NEGATIVE_BELOW:
        return "negative"
    if score > POSITIVE_ABOVE:
        return "positive"
    return "neutral"


def sentiment_body(score: float) -> dict[str, Any]:
    """Symbl's ``sentiment`` object for a score in -1..1."""
    rounded = round(score, 4)
    return {"polarity": {"score": rounded}, "suggested": suggested_sentiment(rounded)}


class SentimentScorer:
    """VADER's lexicon is loaded once; scoring only reads it, so one instance serves every thread."""

    def __init__(self) -> None:
        self.vader = SentimentIntensityAnalyzer()

    def score(self, text: str) -> float:
        return float(self.vader.polarity_scores(text)["compound"])
