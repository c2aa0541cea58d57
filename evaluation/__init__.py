"""Labelled meeting transcripts and the scorer that measures the engine's questions and action items on them."""
