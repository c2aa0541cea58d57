"""One conversation, parsed once: the input every analysis stage reads.

Each stage (questions, action items, topics, entities, summary, analytics) is a function of this and of the
stages before it; none parses again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from spacy.tokens import Doc

from parley_engine.analysis.identity import MemberDirectory
from parley_engine.analysis.segmentation import Sentence, TimedMessage

# Below this share of messages with any sentence punctuation, the text is taken as unpunctuated speech-to-text.
PUNCTUATED_SHARE = 0.3
# From this many words on, a conversation is a meeting (AMI's shortest are ~750 words; a 10-minute call is ~1,500).
MEETING_WORDS = 1000


@dataclass
class ParsedConversation:
    conversation_id: str
    start: datetime
    messages: list[TimedMessage]
    directory: MemberDirectory
    # Tracker vocabulary phrases, parsed in the same batch as the messages.
    vocabulary_docs: dict[str, Doc] = field(default_factory=dict)

    @cached_property
    def speaker_names(self) -> list[str]:
        return [m.name for m in self.directory.members.values() if m.name != "Unknown Speaker"]

    @cached_property
    def first_names(self) -> set[str]:
        """Names known to belong to people: speakers, and anyone the conversation mentions as a person."""
        return {m.first_name.lower() for m in self.directory.members.values()} | {
            ent[0].lower_ for m in self.messages if m.doc is not None for ent in m.doc.ents if ent.label_ == "PERSON"
        }

    @cached_property
    def words_by_member(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for message in self.messages:
            counts[message.member.id] += len(message.text.split())
        return counts

    @cached_property
    def word_count(self) -> int:
        return sum(self.words_by_member.values())

    @cached_property
    def chair_id(self) -> str | None:
        """Who runs the meeting, as far as words show: the member who speaks most (None when nobody spoke)."""
        most = self.words_by_member.most_common(1)
        return most[0][0] if most else None

    @cached_property
    def punctuated(self) -> bool:
        """Whether the text was written or transcribed with punctuation (then a missing "?" says something)."""
        marked = sum(1 for m in self.messages if any(ch in m.text for ch in ".?!"))
        return marked >= PUNCTUATED_SHARE * len(self.messages)

    @cached_property
    def is_meeting(self) -> bool:
        """Long enough to have an agenda, a wrap-up and a few tasks that matter, as the trained models assume."""
        return self.word_count >= MEETING_WORDS

    def sentences(self) -> list[Sentence]:
        """Every sentence in order (built once: the stages index into it)."""
        return self._sentences

    @cached_property
    def _sentences(self) -> list[Sentence]:
        return [sentence for message in self.messages for sentence in message.sentences]

    def relative_position(self, message_index: int) -> float:
        """Where a message falls in the conversation, 0 (first) to 1 (last)."""
        return message_index / max(1, len(self.messages) - 1)
