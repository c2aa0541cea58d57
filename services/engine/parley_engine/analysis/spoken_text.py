"""Spoken text tidied for reading: what a note-taker writes down of a sentence that was said.

Speech (and its transcripts) carries hesitations ("um"), restarts ("we're gonna we're gonna"), and openings that
only hold the floor ("So, okay,"). An action item or a summary line is read, not heard, so they go; the words
that carry the meaning stay in their order, and nothing is invented.
"""

from __future__ import annotations

import re

from parley_engine.redaction.words import REDACTION_TAG

FILLERS = re.compile(r"(?:,\s*)?(?<![\w'])(?:u+m+|u+h+m*|e+r+m+|e+r+|h+m+|m+h*m+|a+h+)(?![\w'])[,.]?\s*", re.IGNORECASE)
INTERJECTED = re.compile(r",?\s*\b(?:you know|i mean|like i said|sort of|kind of)\b\s*,", re.IGNORECASE)
# A run of one to four words said again at once: "we're gonna we're gonna", "the the", "to to".
RESTART = re.compile(r"\b((?:[\w']+[\s,]+){0,3}[\w']+)(?:[\s,]+\1\b)+", re.IGNORECASE)
OPENING = re.compile(
    r"^(?:(?:so|and|but|okay|ok|alright|all right|well|right|yeah|yes|sure|great|perfect|thanks|now|then|anyway|oh"
    r"|also|um|uh)\b[\s,.]*)+",
    re.IGNORECASE,
)
# Doubled words that English writes twice on purpose ("the thing is that that works", "we had had it").
MEANT_TWICE = {"that", "had"}
# A trailing tag that only seeks agreement ("…, yeah", "…, right?").
TRAILING_TAG = re.compile(
    r"[,\s]+(?:yeah|yes|okay|ok|right|you know|i think|i guess|or something|so)\s*([.?!]?)$", re.I
)
# A word broken off and started again: "for th for the", "tr try".
BROKEN_OFF = re.compile(r"(?<![\w'])([a-z]{1,3})\s+(?=\1[a-z])", re.IGNORECASE)
BROKEN_OFF_PHRASE = re.compile(r"(?<![\w'])((?:[\w']+\s+){1,3})([a-z]{1,3})\s+(?=\1\2[a-z])", re.IGNORECASE)
SHORT_WORDS = {
    "a", "i", "an", "in", "on", "at", "to", "it", "is", "as", "be", "we", "he", "me", "my", "so", "no", "do", "go",
    "of", "or", "up", "us", "by", "if", "the", "and", "for", "you", "not", "are", "but", "can", "all", "any", "our",
    "one", "two", "new", "now", "how", "who", "out", "see", "use", "get", "put", "set", "say",
}  # fmt: skip
TRANSCRIPT_TOKENS = re.compile(r"\b([A-Z])_(?=[A-Z]\b)")
# Underscores go (transcripts' markup), except inside a redaction tag ("[PHONE_NUMBER]"), which stays whole.
UNDERSCORE_OR_TAG = re.compile(rf"{REDACTION_TAG.pattern}|_")


def tidy_spoken(text: str) -> str:
    """``"Um so I'll I'll put up um the minutes,"`` → ``"I'll put up the minutes."``."""
    tidied = TRANSCRIPT_TOKENS.sub(r"\1", text)  # AMI spells acronyms "T_V_"
    tidied = UNDERSCORE_OR_TAG.sub(lambda m: m.group(0) if len(m.group(0)) > 1 else "", tidied)
    tidied = FILLERS.sub(" ", tidied)
    tidied = INTERJECTED.sub(",", tidied)
    tidied = BROKEN_OFF_PHRASE.sub("", tidied)
    tidied = BROKEN_OFF.sub(_unless_a_word, tidied)
    tidied = RESTART.sub(_said_once, tidied)
    tidied = OPENING.sub("", tidied.strip())
    tidied = re.sub(r"\s+([,.?!])", r"\1", re.sub(r"\s+", " ", tidied)).strip(" ,;:-")
    tidied = re.sub(r",(?=[.?!]$)", "", tidied)
    tidied = TRAILING_TAG.sub(r"\1", tidied).strip(" ,")
    if not tidied:
        return text.strip()
    tidied = tidied[0].upper() + tidied[1:]
    return tidied if tidied[-1] in ".?!" else tidied + "."


def _said_once(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1).lower() in MEANT_TWICE else match.group(1)


def _unless_a_word(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1).lower() in SHORT_WORDS else ""
