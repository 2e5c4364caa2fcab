"""orjson where it can, the standard library where it refuses: the same values either way."""

from __future__ import annotations

import json

import pytest

from crawler import jsoncodec


@pytest.mark.parametrize(
    "document",
    [
        b'{"id": 5, "x": 0.1, "s": "\\u00e9", "n": null, "l": [1, 2.5e-7, true]}',
        b'{"id": 5, "section_number": 1' + b"0" * 300 + b"}",  # beyond 64 bits: json takes it
        b'{"x": NaN}',
    ],
)
def test_loads_gives_what_the_standard_library_gives(document: bytes) -> None:
    loaded = jsoncodec.loads(document)
    expected = json.loads(document)
    assert json.dumps(loaded) == json.dumps(expected)


@pytest.mark.parametrize("document", [b"{", b'{"a": 1} x', b"\xff\xfe"])
def test_malformed_json_is_still_an_error(document: bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        jsoncodec.loads(document)


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": {"d": 0.30000000000000004, "c": [None, "x"]}},
        {"b": 10**300, "a": 1},  # beyond orjson
    ],
)
def test_dumps_sorted_is_compact_sorted_json_of_the_same_value(value: object) -> None:
    encoded = jsoncodec.dumps_sorted(value)
    assert json.loads(encoded) == value
    assert encoded == json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def test_dumps_keeps_the_key_order_and_takes_any_integer() -> None:
    assert jsoncodec.dumps({"b": 1, "a": [2.5, None]}) == b'{"b":1,"a":[2.5,null]}'
    assert jsoncodec.dumps({"n": 10**30}) == b'{"n":' + b"1" + b"0" * 30 + b"}"
