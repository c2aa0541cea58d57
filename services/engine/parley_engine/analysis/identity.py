"""Deterministic ids for one conversation's insights and members.

Re-analysing the same conversation (an append, a ``refresh=true``) must give the same ids, so they are derived
from the conversation id and the item's kind and index instead of drawn at random.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from parley_engine.conversation import Speaker

# Member ids are UUIDv5 in this namespace, keyed by conversation and speaker.
MEMBER_NAMESPACE = uuid.UUID("6f2d3c0a-5b7e-5c1d-9a43-1f0e8b7d2c55")


def stable_numeric_id(conversation_id: str, kind: str, key: str | int) -> str:
    """A 16-digit decimal id (no leading zero) that depends only on its inputs."""
    digest = hashlib.sha256(f"{conversation_id}:{kind}:{key}".encode()).digest()
    return str(10**15 + int.from_bytes(digest[:8], "big") % (9 * 10**15))


@dataclass(frozen=True)
class Member:
    """A distinct speaker of the conversation, with the ids Symbl's responses carry."""

    id: str
    name: str
    email: str | None
    user_id: str | None

    def as_from(self) -> dict[str, str | None]:
        """Symbl's ``from`` object."""
        return {"id": self.id, "name": self.name, "userId": self.user_id}

    def as_assignee(self) -> dict[str, str]:
        assignee = {"name": self.name}
        if self.email:
            assignee["email"] = self.email
        return assignee

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name


def speaker_key(speaker: Speaker) -> str:
    """What makes two utterances' speakers the same member."""
    return speaker.id or speaker.user_id or speaker.email or speaker.name or "unknown"


@dataclass
class MemberDirectory:
    """The members of one conversation in order of first appearance."""

    conversation_id: str
    members: dict[str, Member] = field(default_factory=dict)

    def member_for(self, speaker: Speaker) -> Member:
        key = speaker_key(speaker)
        if key not in self.members:
            email = speaker.email or (speaker.user_id if speaker.user_id and "@" in speaker.user_id else None)
            name = speaker.name or (email.split("@")[0] if email else None) or "Unknown Speaker"
            member_id = speaker.id or str(uuid.uuid5(MEMBER_NAMESPACE, f"{self.conversation_id}:{key}"))
            self.members[key] = Member(id=member_id, name=name, email=email, user_id=speaker.user_id or email)
        return self.members[key]

    def by_name(self, name: str) -> Member | None:
        """The member called ``name`` (full or first name, any case), if exactly one matches."""
        wanted = name.strip().lower()
        full = [m for m in self.members.values() if m.name.lower() == wanted]
        if full:
            return full[0]
        first = [m for m in self.members.values() if m.first_name.lower() == wanted]
        return first[0] if len(first) == 1 else None
