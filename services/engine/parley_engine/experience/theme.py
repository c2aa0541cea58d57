"""The page's colours: the caller's ``color`` options made readable whatever they are.

Every text colour is chosen against the colour it sits on for a WCAG contrast of at least 4.5:1, and every colour that
carries meaning without text (chart marks, focus rings, borders of controls) for at least 3:1. A custom colour is
kept as it is where it is only a background; where it must itself stand out, it is darkened or lightened just enough.
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT_CONTRAST = 4.5
GRAPHIC_CONTRAST = 3.0

DEFAULT_BACKGROUND = "#f3f4f6"
DEFAULT_TOPICS = "#1d4ed8"
DEFAULT_INSIGHTS = "#7c3aed"
_DARK_TEXT = "#111827"
_LIGHT_TEXT = "#ffffff"
# Distinct hues for speakers, adjusted per surface; past eight speakers the colours repeat (names are always shown).
SPEAKER_HUES = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
POSITIVE = "#15803d"
NEGATIVE = "#b91c1c"

RGB = tuple[float, float, float]


def parse_hex(color: str) -> RGB:
    """``#abc`` or ``#aabbcc`` as red, green and blue in 0..1."""
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(2 * digit for digit in digits)
    if len(digits) != 6:
        raise ValueError(f"not a hex colour: {color!r}")
    red, green, blue = (int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return red, green, blue


def to_hex(rgb: RGB) -> str:
    return "#" + "".join(f"{round(max(0.0, min(1.0, channel)) * 255):02x}" for channel in rgb)


def relative_luminance(color: str) -> float:
    """WCAG 2's relative luminance of an sRGB colour."""

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in parse_hex(color))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(first: str, second: str) -> float:
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def mix(color: str, other: str, share: float) -> str:
    """``color`` with ``share`` (0..1) of ``other`` mixed in."""
    (r1, g1, b1), (r2, g2, b2) = parse_hex(color), parse_hex(other)
    return to_hex((r1 + (r2 - r1) * share, g1 + (g2 - g1) * share, b1 + (b2 - b1) * share))


def readable_text(background: str) -> str:
    """A text colour for ``background``: near-black or white, or pure black or white where neither is enough."""
    preferred = max((_DARK_TEXT, _LIGHT_TEXT), key=lambda text: contrast_ratio(text, background))
    if contrast_ratio(preferred, background) >= TEXT_CONTRAST:
        return preferred
    # Black or white against any colour is at least 4.58:1.
    return max(("#000000", "#ffffff"), key=lambda text: contrast_ratio(text, background))


def standing_out(color: str, against: str, minimum: float) -> str:
    """``color``, darkened or lightened just enough for ``minimum`` contrast against ``against``."""
    if contrast_ratio(color, against) >= minimum:
        return color
    extreme = max(("#000000", "#ffffff"), key=lambda end: contrast_ratio(end, against))
    for step in range(1, 21):
        adjusted = mix(color, extreme, step / 20)
        if contrast_ratio(adjusted, against) >= minimum:
            return adjusted
    return extreme


def is_dark(color: str) -> bool:
    return contrast_ratio(color, "#ffffff") > contrast_ratio(color, "#000000")


@dataclass(frozen=True)
class Theme:
    """Every colour the page's stylesheet uses (its CSS custom properties)."""

    background: str
    text: str
    muted: str
    surface: str
    surface_text: str
    surface_muted: str
    border: str
    topics: str
    topics_text: str
    topics_ink: str
    insights: str
    insights_text: str
    insights_ink: str
    focus: str
    highlight: str
    topic_highlight: str
    color_scheme: str
    positive: str
    negative: str
    speakers: tuple[str, ...]

    @classmethod
    def from_colors(
        cls, background: str | None = None, topics: str | None = None, insights: str | None = None
    ) -> Theme:
        page = background or DEFAULT_BACKGROUND
        # Cards are white on a light page, and a shade lighter than the page on a dark one.
        surface = mix(page, "#ffffff", 0.08) if is_dark(page) else "#ffffff"
        surface_text = readable_text(surface)
        topic_color = topics or DEFAULT_TOPICS
        insight_color = insights or DEFAULT_INSIGHTS
        return cls(
            background=page,
            text=readable_text(page),
            muted=_muted(readable_text(page), page),
            surface=surface,
            surface_text=surface_text,
            surface_muted=_muted(surface_text, surface),
            border=standing_out(mix(surface, surface_text, 0.35), surface, GRAPHIC_CONTRAST),
            topics=topic_color,
            topics_text=readable_text(topic_color),
            topics_ink=standing_out(topic_color, surface, TEXT_CONTRAST),
            insights=insight_color,
            insights_text=readable_text(insight_color),
            insights_ink=standing_out(insight_color, surface, TEXT_CONTRAST),
            focus=_focus_ring(topic_color, surface, page),
            highlight=_tint(surface, insight_color, (surface_text, _muted(surface_text, surface))),
            topic_highlight=_tint(surface, topic_color, (surface_text, _muted(surface_text, surface))),
            color_scheme="dark" if is_dark(surface) else "light",
            positive=standing_out(POSITIVE, surface, GRAPHIC_CONTRAST),
            negative=standing_out(NEGATIVE, surface, GRAPHIC_CONTRAST),
            speakers=tuple(standing_out(hue, surface, GRAPHIC_CONTRAST) for hue in SPEAKER_HUES),
        )


def _muted(text: str, background: str) -> str:
    """Secondary text: as far towards the background as 4.5:1 allows, at most halfway."""
    for step in range(10, -1, -1):
        candidate = mix(text, background, step / 20)
        if contrast_ratio(candidate, background) >= TEXT_CONTRAST:
            return candidate
    return text


def _tint(surface: str, color: str, texts: tuple[str, ...]) -> str:
    """A background of ``surface`` tinted with ``color``, as strongly as the texts on it stay readable allows."""
    for share in (0.18, 0.14, 0.1, 0.06, 0.03):
        tinted = mix(surface, color, share)
        if all(contrast_ratio(text, tinted) >= TEXT_CONTRAST for text in texts):
            return tinted
    return surface


def _focus_ring(accent: str, surface: str, page: str) -> str:
    """A focus outline visible on both the cards and the page."""
    ring = standing_out(accent, surface, GRAPHIC_CONTRAST)
    if contrast_ratio(ring, page) >= GRAPHIC_CONTRAST:
        return ring
    for candidate in ("#000000", "#ffffff"):
        if min(contrast_ratio(candidate, surface), contrast_ratio(candidate, page)) >= GRAPHIC_CONTRAST:
            return candidate
    return readable_text(page)
