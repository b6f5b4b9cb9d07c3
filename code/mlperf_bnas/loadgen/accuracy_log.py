"""``mlperf_log_accuracy.json``, read as a stream: the one reader of the format in this package.

LoadGen writes a JSON array with one ``{"seq_id": n, "qsl_idx": i, "data": "<hex>"}``
object per logged response, where ``data`` is the response's raw bytes in hex. A
full RetinaNet accuracy log is up to 398 MiB (24,781 images x at most 300 detections x
7 float32 as 56 hex characters), so it is never read whole: ``entries``
decodes one object at a time from a bounded buffer (memory stays at the size of
one entry plus one read block), whatever the file's line layout. The accuracy
scripts, the compliance verification, the checker and the run's completeness
check all read through it; ``write_entries`` writes the same format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mlperf_bnas.errors import UserError

DTYPES = {"byte": np.byte, "float32": np.float32, "int32": np.int32, "int64": np.int64}
_BLOCK = 1 << 20
#: One entry larger than this is not a LoadGen response (RetinaNet's largest are ~100 KB).
MAX_ENTRY_BYTES = 64 << 20
_WS = " \t\r\n"


@dataclass(frozen=True)
class Entry:
    seq_id: int
    qsl_idx: int
    data: str           # the response bytes, hex-encoded as LoadGen writes them

    def values(self, dtype: str = "float32") -> np.ndarray:
        """The response as an array of ``dtype`` (see ``DTYPES``)."""
        return decode(self.data, dtype)


def decode(data: str, dtype: str = "float32") -> np.ndarray:
    return np.frombuffer(bytes.fromhex(data), DTYPES[dtype])


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.fh = open(path, encoding="utf-8", errors="strict")
        self.buf = ""
        self.pos = 0              # position in buf
        self.offset = 0           # characters consumed before buf[0]
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        try:
            block = self.fh.read(_BLOCK)
        except UnicodeDecodeError as exc:
            raise UserError(f"{self.path}: not a LoadGen accuracy log (not UTF-8 text: {exc.reason}); "
                            "rerun the accuracy mode") from None
        if not block:
            self.eof = True
            return False
        if self.pos:
            self.offset += self.pos
            self.buf = self.buf[self.pos:]
            self.pos = 0
        self.buf += block
        return True

    def skip(self, chars: str) -> str | None:
        """Skip ``chars``; the next character (not consumed), or None at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in chars:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return None

    def bad(self, what: str) -> UserError:
        return UserError(f"{self.path}: not a complete LoadGen accuracy log ({what} at character "
                         f"{self.offset + self.pos}); rerun the accuracy mode")


def entries(path: str | Path) -> Iterator[Entry]:
    """Every entry of the accuracy log at ``path``, in file order (``UserError`` on a damaged file)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: accuracy log not found; run the accuracy mode first "
                        "(run_offline_accuracy.sh / mlperf-bnas run --mode accuracy)")
    decoder = json.JSONDecoder()
    reader = _Reader(path)
    try:
        if reader.skip(_WS) != "[":
            raise reader.bad("no opening '['")
        reader.pos += 1
        number = 0
        while True:
            c = reader.skip(_WS + ",")
            if c is None:
                raise reader.bad("no closing ']': the log ends early")
            if c == "]":
                reader.pos += 1
                if reader.skip(_WS) is not None:
                    raise reader.bad("text after the closing ']'")
                return
            while True:
                try:
                    obj, end = decoder.raw_decode(reader.buf, reader.pos)
                    break
                except json.JSONDecodeError:
                    if len(reader.buf) - reader.pos > MAX_ENTRY_BYTES or not reader.fill():
                        raise reader.bad(f"entry {number} is not valid JSON") from None
            reader.pos = end
            yield _entry(obj, number, path)
            number += 1
    finally:
        reader.fh.close()


def _entry(obj: object, number: int, path: Path) -> Entry:
    if isinstance(obj, dict):
        seq, idx, data = obj.get("seq_id", number), obj.get("qsl_idx"), obj.get("data")
        if isinstance(idx, int) and isinstance(seq, int) and isinstance(data, str):
            return Entry(seq, idx, data)
    raise UserError(f"{path}: entry {number} is not a LoadGen response "
                    f"({{seq_id, qsl_idx, data}}): {str(obj)[:80]}; rerun the accuracy mode")


def write_entries(path: Path, items: Iterable[Entry]) -> int:
    """Write ``items`` as LoadGen does (one object per line); returns how many."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[\n")
        for entry in items:
            fh.write(("" if count == 0 else ",\n")
                     + f'{{ "seq_id" : {entry.seq_id}, "qsl_idx" : {entry.qsl_idx}, "data" : "{entry.data}" }}')
            count += 1
        fh.write("\n]\n")
    return count
