"""The receiving side's first steps: tagged lines taken out of a byte stream, then checked and decoded.

``TaggedLineFilter`` is used twice on the same stdout bytes: by the relay process, so the terminal never shows
tagged lines, and by the wrapper's tracker, so the console file and the output parsers never see them and the
rebuilder gets them. A line is tagged when it holds the marker anywhere (a launcher may prefix it); the whole line
is then taken out, what precedes the marker included. Output that is not in a tagged line passes at once, except a
line's last bytes when they could be the start of a marker (``@``, ``@@x``...): they wait for the next bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from expertrack.stream import MARKER, MAX_LINE_BYTES

_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SESSION = re.compile(r"[0-9a-f]{16}")
_MAX_DECODED = 64 * MAX_LINE_BYTES  # a payload that inflates past this is refused (a zip bomb on a line)


class StreamError(Exception):
    """A tagged line that cannot be used; ``kind`` groups the reports (each kind is said once)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Batch:
    """One decoded line: whose it is, its place in its session, and its records (JSON lists)."""

    run_id: str
    session: str
    seq: int
    records: list[Any]


class TaggedLineFilter:
    """Splits bytes into what is shown and the tagged lines (each with its newline)."""

    def __init__(self) -> None:
        self._held = b""  # the current line's start, while it holds the marker or may be starting one
        self._skipping = False  # inside a tagged line longer than MAX_LINE_BYTES: dropped up to its newline
        self.oversized: list[bytes] = []  # the start of each line dropped for its length (taken by ``feed``)

    def feed(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """The bytes to show and the complete tagged lines in ``data`` (plus what was held before it)."""
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return b"", []
            self._skipping = False
            data = data[end + 1 :]
        if self._held:
            data, self._held = self._held + data, b""
        elif MARKER[:1] not in data:
            return data, []  # the common case: no '@' at all
        shown: list[bytes] = []
        tagged: list[bytes] = []
        start = 0
        while (at := data.find(MARKER, start)) >= 0:
            line_start = max(start, data.rfind(b"\n", start, at) + 1)
            shown.append(data[start:line_start])
            end = data.find(b"\n", at)
            if end < 0:
                self._hold(data[line_start:])
                break
            tagged.append(data[line_start : end + 1])
            start = end + 1
        else:
            rest = data[start:]
            last_line = rest.rfind(b"\n") + 1
            if _may_start_marker(rest[last_line:]):
                shown.append(rest[:last_line])
                self._held = rest[last_line:]
            else:
                shown.append(rest)
        tagged += self.oversized
        self.oversized.clear()
        return b"".join(shown), tagged

    def end(self) -> tuple[bytes, bytes | None]:
        """At the end of the output: held bytes to show, and a tagged line cut short (no newline), if any."""
        held, self._held = self._held, b""
        if MARKER in held:
            return b"", held
        return held, None

    def _hold(self, partial: bytes) -> None:
        if len(partial) > MAX_LINE_BYTES:
            self._skipping = True
            self.oversized.append(partial[: MAX_LINE_BYTES + 1])  # decode_line refuses it, by its length
        else:
            self._held = partial


def _may_start_marker(tail: bytes) -> bool:
    """Whether ``tail`` ends with the first bytes of the marker (the marker's rest may come in the next read)."""
    return any(tail.endswith(MARKER[:n]) for n in range(len(MARKER) - 1, 0, -1))


def decode_line(line: bytes) -> Batch:
    """A tagged line (from its marker, newline optional) as a ``Batch``; ``StreamError`` says what is wrong."""
    if len(line) > MAX_LINE_BYTES:
        raise StreamError("oversized", f"a tagged line of {len(line):,} bytes (more than {MAX_LINE_BYTES:,})")
    at = line.find(MARKER)
    fields = line[at + len(MARKER) :].rstrip(b"\r\n").split(b" ")
    if at < 0 or len(fields) != 5:
        raise StreamError("malformed", "a tagged line without its five fields (cut short, or not ours)")
    run_id, session, seq, crc, payload = (f.decode("ascii", "replace") for f in fields)
    if not (_RUN_ID.fullmatch(run_id) and _SESSION.fullmatch(session) and seq.isdigit() and len(crc) == 8):
        raise StreamError("malformed", "a tagged line whose run id, session, number or checksum is malformed")
    body = b" ".join(fields[:3]) + b" "
    if f"{zlib.crc32(fields[4], zlib.crc32(body)):08x}" != crc:
        raise StreamError("checksum", "a tagged line whose checksum does not match (cut, mixed with another line)")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(base64.b64decode(payload, validate=True), _MAX_DECODED)
        if inflater.unconsumed_tail:
            raise StreamError("oversized", f"a tagged line whose records inflate past {_MAX_DECODED:,} bytes")
        records = json.loads(text)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise StreamError("payload", f"a tagged line whose records cannot be read ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, list) and r and isinstance(r[0], str) for r in records):
        raise StreamError("payload", "a tagged line whose records are not a list of records")
    return Batch(run_id, session, int(seq), records)
