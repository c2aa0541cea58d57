"""Offline text analysis: questions, action items, follow-ups, topics, entities, summary, analytics, trackers."""

from parley_engine.analysis.analyzer import TextAnalyzer

__all__ = ["TextAnalyzer"]
