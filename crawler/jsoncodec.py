"""JSON in and out of the seeding path: orjson, with the standard library where it refuses.

A whole product is ~90 MB of RMA JSON every sync and 140,000 ``dataset.json`` rows every
plan. orjson decodes a page of 2,000 images with their alignments in about two thirds of
``json.loads``' time and encodes a row in about a fifth of the standard encoder's (the floats
of the alignments dominate both). orjson reads an integer beyond 64 bits as a float and
refuses to write one; a hostile or broken answer may hold such numbers (``crawler/records.py``
then names and skips the record), so a document with a run of 19 digits, and a value orjson
cannot write, go through the standard library: every value is exactly what the API sent.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_SORTED = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_COMPACT = json.JSONEncoder(separators=(",", ":"))
# Any integer beyond 64 bits has 19 digits or more (2**63 has 19); 17 suffice for a float.
# Digits all read as "0", a run of 19 is one substring search (a regex took longer than orjson).
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def loads(body: bytes) -> Any:
    """The value of a JSON document; ``json.JSONDecodeError`` (or ``UnicodeDecodeError``)
    when it is not one."""
    if _LONG_RUN in body.translate(_DIGITS):  # perhaps an integer orjson would make a float
        return json.loads(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # beyond orjson (NaN) or truly malformed


def dumps(value: Any) -> bytes:
    """Compact JSON of ``value`` with its objects' keys in their own order."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _COMPACT.encode(value).encode()


def dumps_sorted(value: Any) -> bytes:
    """Compact JSON with every object's keys sorted: equal values, equal bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _SORTED.encode(value).encode()
