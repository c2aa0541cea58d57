"""How Parley's tools and tests start Debian's Chromium through Playwright (whose own browser download is never used).

The flags keep a headless Chromium off this machine's closed network (background networking, component updates,
sync, QUIC), and let media play without a user gesture or a sound card.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
