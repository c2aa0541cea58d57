"""Resolve spoken date and time phrases ("by Friday", "end of August", "EOD") to moments around the meeting.

dateparser's ``parse`` is reliable on a span spaCy already labelled DATE/TIME, relative to the meeting's start;
its ``search_dates`` is not used (it reads "we" as Wednesday). The phrases dateparser does not know
("end of August", "mid November", "next week", "EOD") go through a small rule layer first.

A bare "Friday" is ambiguous: "Did it go live on Friday?" means the Friday before the meeting, "We'll ship it on
Friday" the one after. ``tense_direction`` reads which from the tense of the verb that governs the phrase.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import dateparser
from spacy.tokens import Span, Token

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
    | {"minute", "minutes", "eod", "cob", "eow", "eom", "eoy", "ago", "business", "fortnight", "o'clock", "am", "pm"}
)
_ORDINAL_UNITS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9,
}  # fmt: skip
_ORDINAL_TEENS = {
    "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15,
    "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
# Spoken day numbers ("July fifteenth", "the twenty - first") as dateparser reads them ("15th", "21st").
_ORDINAL_DAYS = (
    _ORDINAL_UNITS
    | _ORDINAL_TEENS
    | {
        f"{tens}{joiner}{unit}": base + number
        for tens, base in (("twenty", 20), ("thirty", 30))
        for joiner in (" ", "-", " - ")
        for unit, number in _ORDINAL_UNITS.items()
        if base + number <= 31
    }
)
_ORDINAL_DAY = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _ORDINAL_DAYS), key=len, reverse=True)) + r")\b")
_LEADING_WORDS = re.compile(r"^(?:by|until|till|before|on|at|around|for|no later than|the|this coming|this)\s+")
_TIME_HINT = re.compile(r"\d\s*(?:am|pm|a\.m\.|p\.m\.)|\d:\d\d|\bnoon\b|\bmidnight\b|o'clock", re.IGNORECASE)
_MONTH_PART = re.compile(r"^(?:the\s+)?(end|middle|mid|beginning|start|early|late)(?:\s+of)?\s+(?:the\s+)?([a-z]+)$")


class TimeDirection(StrEnum):
    """Which way from the meeting an ambiguous phrase ("Friday", "March") points."""

    PAST = "past"
    FUTURE = "future"


def _start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_day(base: datetime, month: int, day: int | None, direction: TimeDirection) -> datetime:
    """The ``day`` (None = last day) of ``month``: the next one not over yet, or the last one already begun."""
    if direction is TimeDirection.PAST:
        year = base.year if month <= base.month else base.year - 1
    else:
        year = base.year if month >= base.month else base.year + 1
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day or last, last))


def _day_of_month(today: datetime, day: int, direction: TimeDirection) -> datetime | None:
    """ "The 31st": the next (or last) month that has that day, counting the meeting's own month."""
    step = -1 if direction is TimeDirection.PAST else 1
    year, month = today.year, today.month
    for _ in range(13):
        if day <= calendar.monthrange(year, month)[1]:
            candidate = datetime(year, month, day)
            if (candidate >= today) if step > 0 else (candidate < today):
                return candidate
        month += step
        year, month = (year + 1, 1) if month > 12 else (year - 1, 12) if month < 1 else (year, month)
    return None


def _rule_based(phrase: str, base: datetime, direction: TimeDirection) -> datetime | None:
    """The phrases dateparser misreads or does not know."""
    today = _start_of_day(base)
    if re.fullmatch(r"(?:19|20)\d\d", phrase):
        return datetime(int(phrase), 1, 1)
    day_of_month = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)", phrase)
    if day_of_month:
        return _day_of_month(today, int(day_of_month.group(1)), direction)
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
        current = (today.month - 1) // 3 + 1
        number = int(quarter.group(1)) if quarter.group(1) else current
        if direction is TimeDirection.PAST:
            year = today.year if number <= current else today.year - 1
        else:
            year = today.year if number >= current else today.year + 1
        month = number * 3
        return datetime(year, month, calendar.monthrange(year, month)[1])
    month_part = _MONTH_PART.match(phrase)
    if month_part and month_part.group(2) in MONTHS:
        part, month = month_part.group(1), MONTHS[month_part.group(2)]
        day = {"end": None, "late": None, "middle": 15, "mid": 15, "beginning": 1, "start": 1, "early": 1}[part]
        return _month_day(base, month, day, direction)
    return None


@lru_cache(maxsize=4096)
def _resolve(phrase: str, base: datetime, direction: TimeDirection) -> datetime | None:
    cleaned = re.sub(r"[^\w:'\s.-]", " ", phrase.lower())
    cleaned = re.sub(r"\s+", " ", cleaned).strip().replace("mid-", "mid ")
    if cleaned.startswith("the ") or set(cleaned.split()) & MONTHS.keys():
        # Only beside a month or after "the": "a second" is a duration, not the 2nd.
        cleaned = _ORDINAL_DAY.sub(lambda match: _ordinal_suffixed(_ORDINAL_DAYS[match.group(1)]), cleaned)
    previous = None
    while previous != cleaned:
        # Rules first at every step: "this afternoon" is a rule, "afternoon" alone names no moment.
        ruled = _rule_based(cleaned, base, direction)
        if ruled is not None:
            return ruled
        previous, cleaned = cleaned, _LEADING_WORDS.sub("", cleaned)
    if not cleaned:
        return None
    if not (re.search(r"\d", cleaned) or set(re.findall(r"[a-z]+", cleaned)) & _DATE_WORDS):
        return None  # dateparser reads "we" as Wednesday and "mar" as March: insist on a real date word
    parsed = dateparser.parse(
        cleaned,
        languages=["en"],
        settings={
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": direction.value,
            "RETURN_AS_TIMEZONE_AWARE": False,
            "PREFER_DAY_OF_MONTH": "first",
        },
    )
    if parsed is None:
        return None
    if not _TIME_HINT.search(cleaned) and parsed.time() == base.time():
        parsed = _start_of_day(parsed)
    return parsed


def _ordinal_suffixed(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def resolve_moment(
    phrase: str, conversation_start: datetime, direction: TimeDirection = TimeDirection.FUTURE
) -> datetime | None:
    """The UTC moment ``phrase`` names, read relative to the conversation's start; None if it names none.

    ``direction`` settles phrases that could point either way ("Friday", "March"): the most recent one before
    the meeting's day for the past, the next one after it for the future. Explicit words ("last", "next",
    "ago") win over it.
    """
    base = conversation_start.astimezone(UTC).replace(tzinfo=None) if conversation_start.tzinfo else conversation_start
    resolved = _resolve(phrase, base, direction)
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


# Auxiliaries and verb tags that place the event before the meeting, and those that place it after.
_FUTURE_AUXILIARIES = {"will", "'ll", "shall", "wo", "gon"}
_PERFECT_AUXILIARIES = {"have", "has", "'ve", "had"}
_PAST_TAGS = {"VBD"}


def _governing_verb(span: Span) -> Token | None:
    """The verb (or copula) whose clause the phrase belongs to: "go" in "did it go live on Friday"."""
    token = span.root
    while token.pos_ not in {"VERB", "AUX"}:
        if token.head.i == token.i:
            return None
        token = token.head
    return token


def tense_direction(span: Span) -> TimeDirection:
    """Past when the governing verb is past ("did … go", "went", "was released", "has shipped"), else future.

    The future is the default: imperatives, "will", "going to", present progressive and present simple
    ("the launch is on Friday") all schedule something, and due dates are the common case.
    """
    verb = _governing_verb(span)
    if verb is None:
        return TimeDirection.FUTURE
    auxiliaries = [child for child in verb.children if child.dep_ in {"aux", "auxpass"}]
    if any(aux.lower_ in _FUTURE_AUXILIARIES for aux in auxiliaries):
        return TimeDirection.FUTURE
    if verb.dep_ == "xcomp" and verb.head.lower_ in {"going", "gon"}:
        return TimeDirection.FUTURE  # "we're going to ship it on Friday"
    if verb.tag_ in _PAST_TAGS or any(aux.tag_ in _PAST_TAGS for aux in auxiliaries):
        return TimeDirection.PAST  # "went", "did … go", "was released", "were shipping"
    if verb.tag_ == "VBN" and any(aux.lower_ in _PERFECT_AUXILIARIES for aux in auxiliaries):
        return TimeDirection.PAST  # "has shipped", "should have shipped"
    return TimeDirection.FUTURE


# What a reader of the entity list can place on a calendar, and what only looks like a date to the model.
DURATION_UNITS = {
    "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "fortnight",
    "fortnights", "month", "months", "year", "years", "decade", "decades", "century", "centuries", "millisecond",
    "milliseconds", "night", "nights", "weekend", "weekends", "quarter", "quarters", "semester", "semesters",
}  # fmt: skip
# Words that, inside or right after an amount of time, make it a moment: "two weeks ago", "the last three years".
_DURATION_ANCHORS = {
    "ago", "last", "past", "next", "coming", "previous", "later", "earlier", "before", "after", "since", "from",
    "now", "this", "that", "today", "tomorrow", "yesterday", "tonight",
}  # fmt: skip
_AMOUNT_WORDS = {
    "about", "around", "approximately", "roughly", "nearly", "almost", "some", "over", "under", "just", "only",
    "at", "least", "more", "less", "than", "a", "an", "another", "extra", "further", "and", "or", "half", "couple",
    "few", "several", "of", "the", "to", "up", "like", "-",
}  # fmt: skip
# Words that only point at the meeting's own moment or day, which the reader already knows ("this morning").
_MEETING_MOMENT_WORDS = {
    "today", "today's", "tonight", "tonight's", "now", "nowadays", "currently", "this", "morning", "afternoon",
    "evening", "moment", "present", "time", "these", "days", "day", "right", "the", "at", "so", "far", "here",
}  # fmt: skip
_SEASONS_AND_HOLIDAYS = {
    "spring", "summer", "autumn", "fall", "winter", "christmas", "easter", "thanksgiving", "halloween", "hanukkah",
    "ramadan", "diwali", "xmas", "century",
}  # fmt: skip
_FREQUENCY_WORDS = {
    "every", "each", "per", "daily", "weekly", "monthly", "yearly", "annual", "annually", "quarterly", "hourly",
    "nightly", "biweekly", "twice", "once", "times",
}  # fmt: skip
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d(?:\s*[-/\u2013]\s*\d\d(?:\d\d)?)?s?\b")  # "2019", "2019-20", "1990s"
_ORDINAL_NUMBER = re.compile(r"\b\d{1,2}(?:st|nd|rd|th)\b")
_AGE_OR_SCHOOL_YEAR = re.compile(
    r"\byears?[-\s]+olds?\b|\b(?:year|years|stage|key stage|grade|class|level)\s+\d", re.IGNORECASE
)
_TIME_OF_DAY = re.compile(
    r"\d\s*(?:am|pm|a\.m|p\.m)|\b(?:am|pm)\b|:\d\d|o'clock|noon|midnight|\bago\b|yesterday|tomorrow|tonight|today",
    re.IGNORECASE,
)


def _words(span: Span) -> list[str]:
    return [token.lower_ for token in span if not token.is_punct]


def is_plain_number(span: Span) -> bool:
    """ "four or five", "twelve and a half": a DATE/TIME span with no date or time word, only a number."""
    has_date_word = any(
        word in MONTHS or word in WEEKDAYS or word in DURATION_UNITS or word in _SEASONS_AND_HOLIDAYS
        for word in _words(span)
    )
    return not has_date_word and not _TIME_OF_DAY.search(span.text) and not _YEAR.search(span.text)


def _is_deadline(span: Span) -> bool:
    """ "(back) in five minutes", "within two weeks": an amount of time after which something is to happen."""
    if span.start == 0:
        return False
    preposition = span.doc[span.start - 1]
    return (
        preposition.lower_ in {"in", "within"}
        and preposition.head.pos_ in {"VERB", "AUX"}
        and tense_direction(span) is TimeDirection.FUTURE
    )


def is_duration(span: Span) -> bool:
    """ "twelve minutes", "about three or four years": an amount of time, not a moment."""
    words = _words(span)
    if not set(words) & DURATION_UNITS or set(words) & _DURATION_ANCHORS:
        return False
    if span.end < len(span.doc) and span.doc[span.end].lower_ in _DURATION_ANCHORS:
        return False  # "two weeks ago" with "ago" outside the span
    if _is_deadline(span):
        return False
    amounts = [token for token in span if not token.is_punct and token.lower_ not in DURATION_UNITS]
    return all(token.like_num or token.lower_ in _AMOUNT_WORDS for token in amounts)


def _is_ordinal_period(words: list[str]) -> bool:
    """ "the first year", "the second week" of something unnamed: a place in a sequence, not on the calendar."""
    for index, word in enumerate(words[:-1]):
        rest = [w for w in words[index + 1 :] if not w.isdigit() and w not in _AMOUNT_WORDS]
        if word in _ORDINAL_DAYS and rest and rest[0] in DURATION_UNITS:
            return not set(words) & (_DURATION_ANCHORS | MONTHS.keys()) and not any(w.isdigit() for w in words)
    return False


def _names_a_calendar_period(span: Span) -> bool:
    """Whether a phrase dateparser could not resolve still names a place on the calendar ("Christmas", "2019-20")."""
    vocabulary = set(_words(span))
    named = bool(
        vocabulary & (MONTHS.keys() - {"may", "mar", "jun", "sep", "oct", "dec", "jan", "feb", "apr", "aug", "nov"})
        or vocabulary & WEEKDAYS.keys()
        or vocabulary & _SEASONS_AND_HOLIDAYS
        or _YEAR.search(span.text)
        or _ORDINAL_NUMBER.search(span.text)
    )
    describes_a_noun = span.root.dep_ in {"compound", "amod"} and span.root.head.i >= span.end
    return named and not describes_a_noun  # "Canada summer jobs": a kind of job, not a summer


def calendar_entity(span: Span, conversation_start: datetime) -> tuple[str, str] | None:
    """Symbl's ("date", "2026-11-20") or ("time", "…T17:00:00.000Z") for a DATE/TIME span, or None.

    None when the span names nothing a reader could place on the calendar apart from the meeting itself: an
    amount of time ("twelve minutes"), a frequency ("every week"), an age, "this morning" or "today".
    """
    words = _words(span)
    if not words or _AGE_OR_SCHOOL_YEAR.search(span.text) or set(words) & _FREQUENCY_WORDS:
        return None
    if set(words) <= _MEETING_MOMENT_WORDS or is_duration(span) or _is_ordinal_period(words):
        return None
    moment = resolve_moment(date_phrase(span), conversation_start, tense_direction(span))
    if moment is not None:
        if span.label_ == "TIME" or moment.hour or moment.minute:
            return "time", iso_utc(moment)
        return "date", moment.date().isoformat()
    return ("date", span.text) if _names_a_calendar_period(span) else None
