"""Decoding messages: what the store could not keep is refused with a reason."""

from __future__ import annotations

import orjson
import pytest

from qualify.core.activity import decode_line, has_nul
from qualify.errors import MessageError


def line(**fields: object) -> bytes:
    message = {"type": "track", "event": "e", "userId": "u", "messageId": "m", **fields}
    message.setdefault("timestamp", "2026-03-01T00:00:00Z")
    return orjson.dumps(message)


def test_a_nul_character_is_found_but_an_escaped_backslash_is_not_one() -> None:
    assert has_nul(orjson.dumps({"x": "a\u0000b"}))
    assert has_nul(orjson.dumps({"x": "a\\\u0000b"}))  # a backslash, then NUL
    assert not has_nul(orjson.dumps({"x": "a\\u0000b"}))  # the six characters \u0000
    assert not has_nul(b"{}")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"userId": "u" * 201}, "`userId` is 201 characters long; at most 200"),
        ({"event": "e" * 300}, "`event name` is 300 characters long; at most 200"),
        ({"messageId": "m" * 201}, "`messageId` is 201 characters long"),
        ({"userId": "anon:x"}, "may not start with `anon:`"),
        ({"properties": {"x": "\u0000"}}, "NUL character"),
    ],
)
def test_messages_the_store_could_not_keep_are_refused(fields: dict, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        decode_line(line(**fields), keep_raw=True)  # as `qualify ingest` reads lines


def test_a_nul_character_is_fine_where_nothing_is_stored() -> None:
    assert decode_line(line(properties={"x": "\u0000"})).properties == {"x": "\u0000"}


def test_ids_of_200_characters_are_fine() -> None:
    assert decode_line(line(userId="u" * 200)).user_id == "u" * 200
