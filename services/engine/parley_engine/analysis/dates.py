"""Resolve spoken date and time phrases ("by Friday", "end of August", "EOD") to moments after the meeting.

dateparser's ``parse`` is reliable on a span spaCy already labelled DATE/TIME, relative to the meeting's start;
its ``search_dates`` is not used (it reads "we" as Wednesday). The phrases dateparser does not know
("end of August", "mid November", "next week", "EOD") go through a small rule layer first.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import dateparser
from spacy.tokens import Span

MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
WEEKDAYS = {name.lower(): number for number, name in enumerate(calendar.day_name)}
END_OF_DAY_HOUR = 17

_DATE_WORDS = (
    {name.lower() for name in calendar.month_name if name}
    | {name.lower() for name in calendar.day_name}
    | {"sept", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
    | {"mon", "tue", "tues", "wed", "thu", "thurs", "fri", "sat", "sun", "q1", "q2", "q3", "q4"}
    | {"today", "tomorrow", "yesterday", "tonight", "day", "days", "week", "weeks", "weekend", "month", "months"}
    | {"year", "years", "quarter", "noon", "midnight", "morning", "afternoon", "evening", "night", "hour", "hours"}
    | {"minute", "minutes", "eod", "cob", "eow", "eom", "eoy", "ago", "business", "fortnight", "o'clock"}
)
_LEADING_WORDS = re.compile(r"^(?:by|until|till|before|on|at|around|for|no later than|the|this coming|this)\s+")
_TIME_HINT = re.compile(r"\d\s*(?:am|pm|a\.m\.|p\.m\.)|\d:\d\d|\bnoon\b|\bmidnight\b|o'clock", re.IGNORECASE)
_MONTH_PART = re.compile(r"^(?:the\s+)?(end|middle|mid|beginning|start|early|late)(?:\s+of)?\s+(?:the\s+)?([a-z]+)$")


def _start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month_day(base: datetime, month: int, day: int | None) -> datetime:
    """The ``day`` (None = last day) of the next ``month`` that is not over yet."""
    year = base.year if month >= base.month else base.year + 1
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day or last, last))


def _rule_based(phrase: str, base: datetime) -> datetime | None:
    """The phrases dateparser misreads or does not know."""
    today = _start_of_day(base)
    if phrase in {"eod", "end of day", "end of the day", "cob", "close of business", "end of business", "today"}:
        return today.replace(hour=END_OF_DAY_HOUR)
    if phrase in {"tonight", "this evening"}:
        return today.replace(hour=20)
    if phrase in {"this afternoon"}:
        return today.replace(hour=15)
    if phrase in {"this morning"}:
        return today.replace(hour=9)
    if phrase in {"end of week", "end of the week", "eow", "end of this week", "week", "later this week"}:
        return today + timedelta(days=(4 - today.weekday()) % 7)
    if phrase in {"next week", "early next week", "beginning of next week", "start of next week"}:
        return today + timedelta(days=7 - today.weekday())
    if phrase in {"end of next week", "late next week"}:
        return today + timedelta(days=7 - today.weekday() + 4)
    if phrase in {"end of month", "end of the month", "end of this month", "eom"}:
        return today.replace(day=calendar.monthrange(today.year, today.month)[1])
    if phrase in {"next month", "early next month", "beginning of next month"}:
        return (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    if phrase in {"end of year", "end of the year", "end of this year", "eoy"}:
        return today.replace(month=12, day=31)
    quarter = re.fullmatch(r"(?:end of |the end of )?(?:the )?(?:q([1-4])|quarter)", phrase)
    if quarter:
        number = int(quarter.group(1)) if quarter.group(1) else (today.month - 1) // 3 + 1
        year = today.year if number >= (today.month - 1) // 3 + 1 else today.year + 1
        month = number * 3
        return datetime(year, month, calendar.monthrange(year, month)[1])
    month_part = _MONTH_PART.match(phrase)
    if month_part and month_part.group(2) in MONTHS:
        part, month = month_part.group(1), MONTHS[month_part.group(2)]
        day = {"end": None, "late": None, "middle": 15, "mid": 15, "beginning": 1, "start": 1, "early": 1}[part]
        return _next_month_day(base, month, day)
    return None


@lru_cache(maxsize=4096)
def _resolve(phrase: str, base: datetime) -> datetime | None:
    cleaned = re.sub(r"[^\w:'\s.-]", " ", phrase.lower())
    cleaned = re.sub(r"\s+", " ", cleaned).strip().replace("mid-", "mid ")
    previous = None
    while previous != cleaned:
        previous, cleaned = cleaned, _LEADING_WORDS.sub("", cleaned)
    if not cleaned:
        return None
    if not (re.search(r"\d", cleaned) or set(re.findall(r"[a-z]+", cleaned)) & _DATE_WORDS):
        return None  # dateparser reads "we" as Wednesday and "mar" as March: insist on a real date word
    ruled = _rule_based(cleaned, base)
    if ruled is not None:
        return ruled
    parsed = dateparser.parse(
        cleaned,
        languages=["en"],
        settings={
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": "future",
            "RETURN_AS_TIMEZONE_AWARE": False,
            "PREFER_DAY_OF_MONTH": "first",
        },
    )
    if parsed is None:
        return None
    if not _TIME_HINT.search(cleaned) and parsed.time() == base.time():
        parsed = _start_of_day(parsed)
    return parsed


def resolve_moment(phrase: str, conversation_start: datetime) -> datetime | None:
    """The UTC moment ``phrase`` names, read relative to the conversation's start; None if it names none."""
    base = conversation_start.astimezone(UTC).replace(tzinfo=None) if conversation_start.tzinfo else conversation_start
    resolved = _resolve(phrase, base)
    return resolved.replace(tzinfo=UTC) if resolved else None


def iso_utc(moment: datetime) -> str:
    """Symbl's timestamp form: ``2020-06-22T07:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# Words spaCy leaves outside a DATE entity that change its meaning ("end of" + "August").
_DATE_PREFIXES = ("end of the", "end of", "middle of", "mid", "beginning of", "start of", "early", "late", "the end of")


def date_phrase(ent: Span) -> str:
    """The entity's text with a preceding "end of"/"mid"/"early" that spaCy left outside it."""
    doc = ent.doc
    before = doc[max(0, ent.start - 3) : ent.start].text.lower()
    for prefix in sorted(_DATE_PREFIXES, key=len, reverse=True):
        if before.endswith(prefix) and not ent.text.lower().startswith(prefix.split()[0]):
            return f"{prefix} {ent.text}"
    return ent.text
