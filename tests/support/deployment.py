"""Reading what a user deploys: Dockerfiles (instruction by instruction) and the settings a variable reaches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from pydantic_settings import BaseSettings


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's words; a shell-form instruction is a failure here, since it breaks SIGTERM."""
        words = json.loads(self.arguments)
        assert isinstance(words, list), f"{self.keyword} is not in exec form: {self.arguments}"
        return [str(word) for word in words]


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions in order, continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [index for index, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    return instructions[starts[-1] :]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in instructions if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def settings_field_exists(settings: type[BaseSettings], variable: str) -> bool:
    """Whether pydantic-settings would read ``variable`` into a field of ``settings`` (nested with the delimiter)."""
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    if not variable.upper().startswith(prefix):
        return False
    parts = [variable[len(prefix) :].lower()]
    delimiter = settings.model_config.get("env_nested_delimiter")
    if parts[0] not in settings.model_fields and delimiter:
        parts = parts[0].split(delimiter)
    model: type[BaseModel] = settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if depth < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True
