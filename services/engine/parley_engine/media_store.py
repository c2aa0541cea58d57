"""Each audio/video conversation's media, kept after its job for the Experience page's player.

One file per conversation, ``<conversationId><suffix>`` in ``EngineSettings.kept_media_dir``: the media of the
conversation's first audio or video job (media appended later is transcribed but not kept beside it). Deleting the
conversation deletes its media.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

# Conversation ids are the engine's own numeric ids; anything else cannot name a kept file (no path tricks).
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class KeptMedia:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def path(self, conversation_id: str) -> Path | None:
        """The conversation's kept media file, if it has one."""
        if not _SAFE_ID.fullmatch(conversation_id) or not self._directory.is_dir():
            return None
        return next(iter(sorted(self._directory.glob(f"{conversation_id}.*"))), None)

    def keep(self, conversation_id: str, media: Path) -> bool:
        """Move a finished job's media here, unless the conversation has media kept already; True if moved."""
        if not _SAFE_ID.fullmatch(conversation_id) or self.path(conversation_id) is not None:
            return False
        self._directory.mkdir(parents=True, exist_ok=True)
        shutil.move(media, self._directory / f"{conversation_id}{media.suffix}")
        return True

    def forget(self, conversation_id: str) -> None:
        while (kept := self.path(conversation_id)) is not None:
            kept.unlink(missing_ok=True)
