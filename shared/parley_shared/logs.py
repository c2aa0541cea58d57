"""Logging set up once per process: one line per record, level from settings."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka is chatty about routine group membership at INFO, faststream logs every message it handles.
    quiet = max(logging.WARNING, logging.getLogger().level)
    for chatty in ("aiokafka", "faststream", "faststream.access.kafka"):
        logging.getLogger(chatty).setLevel(quiet)
