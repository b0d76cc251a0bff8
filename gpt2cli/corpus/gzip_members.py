"""A ``.warc.gz`` (or ``.arc.gz``) read member by member, as crawlers write one per record.

Unlike ``gzip.GzipFile``, a read never runs past the end of a member, so every whole member
is delivered before a cut or damaged one is met, and a damaged member does not end the file:

- corrupt deflate data: what the member gave so far is delivered, the rest of it is passed
  over to the next gzip header (``damage`` lists where, for the reader to count);
- the file ends inside a member: what it gave is delivered, then end of input, with
  ``cut`` set (the reader reports it; this layer never raises mid-read).
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

MAGIC = b"\x1f\x8b\x08"
INPUT_BLOCK = 1 << 16
OUTPUT_BLOCK = 1 << 18
PROBE_LIMIT = 1 << 16  # input a member found after damage may take before it gives output


class GzipMembers(io.RawIOBase):
    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._input = b""
        self._consumed = 0  # compressed bytes before ``_input``
        self._decoder: zlib._Decompress | None = None
        self._output = memoryview(b"")
        self.cut = False
        self.damage: list[int] = []  # compressed offsets of the damaged members
        # After damage the next gzip header is searched for, and three bytes of deflate data
        # can look like one: such a member is on probation, its input kept, until it gives
        # output; if it fails first, the search goes on from the byte after its "header".
        self._probe: bytes | None = None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        super().close()
        if self._handle is not None:
            self._handle.close()

    def detach_input(self) -> None:
        """Leaves the compressed input (stdin) open when this reader closes."""
        self._handle = None  # type: ignore[assignment]

    def _more(self) -> bool:
        chunk = self._handle.read(INPUT_BLOCK)
        self._input += chunk
        return bool(chunk)

    def _take(self, size: int) -> None:
        self._input = self._input[size:]
        self._consumed += size

    def _to_next_member(self) -> bool:
        """Passes over bytes up to the next gzip header; False at the end of the input."""
        while True:
            found = self._input.find(MAGIC)
            if found >= 0:
                self._take(found)
                return True
            self._take(max(len(self._input) - 2, 0))
            if not self._more():
                self._take(len(self._input))
                return False

    def _step(self) -> bool:
        """Inflates the next piece into ``_output``; False at the end of the input."""
        if self._decoder is None:
            while len(self._input) < len(MAGIC) and self._more():
                pass
            if not self._input:
                return False
            if not self._input.startswith(MAGIC):
                self.damage.append(self._consumed)  # bytes between members that are no member
                if not self._to_next_member():
                    return False
                self._probe = b""
            self._decoder = zlib.decompressobj(31)
        if not self._input and not self._more():
            self._decoder = None
            if self._probe is not None:
                return self._false_member()
            self.cut = True  # the file ends inside this member
            return False
        data = self._input
        try:
            out = self._decoder.decompress(data, OUTPUT_BLOCK)
        except zlib.error:
            self._decoder = None
            if self._probe is not None:
                return self._false_member()
            self.damage.append(self._consumed)
            self._take(1)
            if not self._to_next_member():
                return False
            self._probe = b""
            return True
        if self._decoder.eof:
            rest = self._decoder.unused_data
            self._decoder = None
        else:
            rest = self._decoder.unconsumed_tail
        used = len(data) - len(rest)
        if self._probe is not None:
            self._probe += data[:used]
            if out:
                self._probe = None
            elif len(self._probe) > PROBE_LIMIT:
                self._decoder = None
                self._take(used)
                return self._false_member()
        self._take(used)
        self._output = memoryview(out)
        return True

    def _false_member(self) -> bool:
        """Takes back the input of a member on probation that failed before giving output,
        and searches on from the byte after its start; False at the end of the input."""
        probe, self._probe = self._probe or b"", None
        self._consumed -= len(probe)  # back at the start of the false header...
        self._input = probe + self._input
        self._take(1)  # ...and one byte past it
        if not self._to_next_member():
            return False
        self._probe = b""
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._output:
            if not self._step():
                return 0
        size = min(len(buffer), len(self._output))
        buffer[:size] = self._output[:size]
        self._output = self._output[size:]
        return size
