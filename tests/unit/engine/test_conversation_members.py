"""Renaming a member: every object of the stored insights that carries the member, and the utterances they spoke."""

from __future__ import annotations

from typing import Any

from parley_engine.conversation import find_member, rename_member, renamed_speaker


def test_rename_member_reaches_every_object_with_the_id() -> None:
    stored: dict[str, Any] = {
        "members": [{"id": "m1", "name": "Mike", "email": None}],
        "messages": [{"id": "x", "text": "hi", "from": {"id": "m1", "name": "Mike", "userId": None}}],
        "questions": [{"id": "m1", "text": "not a member: no name/email/userId keys"}],
    }
    renamed = rename_member(stored, "m1", "Michael", "michael@example.com")
    assert renamed["members"][0] == {"id": "m1", "name": "Michael", "email": "michael@example.com"}
    assert renamed["messages"][0]["from"]["name"] == "Michael"
    assert renamed["questions"][0] == stored["questions"][0]


def test_renamed_speaker_matches_the_member_by_id_then_by_former_email_or_name() -> None:
    stored = {"members": [{"id": "m1", "name": "Mike", "email": "mike@example.com"}, {"id": "m2", "name": "Ann"}]}
    member = find_member(stored, "m1")
    assert member == stored["members"][0] and find_member(stored, "m3") is None

    assert renamed_speaker({"id": "m1", "name": "Mike"}, member, "Michael", None) == {"id": "m1", "name": "Michael"}
    by_email = renamed_speaker({"name": "M.", "user_id": "mike@example.com"}, member, None, "m@example.com")
    assert by_email == {"id": "m1", "name": "M.", "user_id": "mike@example.com", "email": "m@example.com"}
    assert renamed_speaker({"name": "Mike"}, member, "Michael", None) == {"name": "Michael", "id": "m1"}
    # Someone else: another id, or no id and neither the member's email nor name.
    assert renamed_speaker({"id": "m2", "name": "Mike"}, member, "Michael", None) is None
    assert renamed_speaker({"name": "Ann", "email": "ann@example.com"}, member, "Michael", None) is None
