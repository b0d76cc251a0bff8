"""WARC output: records built with warcio, one gzip member each, files rotated by size.

A file is written as ``NAME.warc.gz.open`` and renamed to ``NAME.warc.gz`` when closed
(full, or at the end of the run). The fetch log names, for every URL, the file, offset and
length of its records, and a log line is written only after those bytes are flushed and
fsynced; a full file is renamed only after the log lines naming its records are written. So
after a kill at any instant, cutting each ``.open`` file back to the end of its last logged
record leaves whole records only, and exactly those of the URLs logged done.
"""

from __future__ import annotations

import io
import os
import re
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from gpt2cli.corpus.fetch.client import Exchange
from gpt2cli.fileio import create_new, fsync_directory, open_own_file

OPEN_SUFFIX = ".open"


def _writer(buffer: BinaryIO):
    from warcio.warcwriter import WARCWriter

    return WARCWriter(buffer, gzip=True, warc_version="1.1")


def exchange_records(exchanges: list[Exchange]) -> bytes:
    """Response and request records of each hop (in order), as concatenated gzip members."""
    from warcio.statusandheaders import StatusAndHeaders

    buffer = io.BytesIO()
    writer = _writer(buffer)
    for hop in exchanges:
        extra = {"WARC-Date": hop.date}
        if hop.ip:
            extra["WARC-IP-Address"] = hop.ip
        if hop.truncated:
            extra["WARC-Truncated"] = hop.truncated
        http = StatusAndHeaders(hop.status_line, hop.headers, protocol=hop.protocol)
        response = writer.create_warc_record(
            hop.url, "response", payload=io.BytesIO(hop.body), http_headers=http,
            warc_headers_dict=extra,
        )  # fmt: skip
        writer.write_record(response)
        request = writer.create_warc_record(
            hop.url,
            "request",
            payload=io.BytesIO(hop.request_head),
            warc_content_type="application/http; msgtype=request",
            warc_headers_dict={
                "WARC-Date": hop.date,
                "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
                **({"WARC-IP-Address": hop.ip} if hop.ip else {}),
            },
        )
        writer.write_record(request)
    return buffer.getvalue()


def warcinfo_record(filename: str, fields: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    writer = _writer(buffer)
    writer.write_record(writer.create_warcinfo_record(filename, fields))
    return buffer.getvalue()


class WarcFiles:
    """The WARC files of one run (one part): ``{prefix}-00000.warc.gz``, ``-00001``, ..."""

    def __init__(self, directory: Path, prefix: str, max_size: int, info: dict[str, str]) -> None:
        self.directory = directory
        self.prefix = prefix
        self.max_size = max_size
        self.info = info
        self._pattern = re.compile(re.escape(prefix) + r"-(\d{5,})\.warc\.gz(\.open)?$")
        self._handle: BinaryIO | None = None
        self._name = ""
        self._size = 0
        self._next = 0
        self._retired: list[tuple[str, BinaryIO]] = []
        self.closed_files: list[str] = []

    def resume(self, logged_end: dict[str, int]) -> int:
        """Cut every ``.open`` file back to the end of its last logged record (removed when
        none is logged); number new files after every existing one. Returns bytes cut."""
        cut = 0
        numbers = []
        open_files = []
        for entry in os.scandir(self.directory):
            match = self._pattern.match(entry.name)
            if match:
                numbers.append(int(match.group(1)))
                if match.group(2):
                    open_files.append(entry.name)
        self._next = max(numbers) + 1 if numbers else 0
        for name in sorted(open_files):
            path = self.directory / name
            final = name.removesuffix(OPEN_SUFFIX)
            end = logged_end.get(final, 0)
            size = path.stat().st_size
            cut += max(size - end, 0)
            if end == 0:
                path.unlink()
                continue
            with os.fdopen(open_own_file(path, os.O_RDWR), "r+b") as handle:
                handle.truncate(end)
                os.fsync(handle.fileno())
            os.replace(path, self.directory / final)
            self.closed_files.append(final)
        fsync_directory(self.directory)
        return cut

    def write(self, data: bytes) -> tuple[str, int, int]:
        """Append one URL's records; (file name, offset, length). A file that would grow past
        ``max_size`` is retired first (it is closed by ``finish`` once its log is written)."""
        if self._handle is not None and self._size + len(data) > self.max_size:
            self.retire_current()
        if self._handle is None:
            self._open_next()
        assert self._handle is not None
        offset = self._size
        try:
            self._handle.write(data)
        except OSError as error:
            error.filename = error.filename or str(self.directory / (self._name + OPEN_SUFFIX))
            raise
        self._size += len(data)
        return self._name, offset, len(data)

    def _open_next(self) -> None:
        self._name = f"{self.prefix}-{self._next:05d}.warc.gz"
        self._next += 1
        self._handle = create_new(self.directory / (self._name + OPEN_SUFFIX))
        info = warcinfo_record(self._name, self.info)
        self._handle.write(info)
        self._size = len(info)

    def retire_current(self) -> None:
        """No more records go to the open file: the next write starts a new one."""
        if self._handle is not None:
            self._retired.append((self._name, self._handle))
            self._handle = None

    @property
    def retired(self) -> int:
        return len(self._retired)

    def flush(self) -> tuple[list[int], list[tuple[str, BinaryIO]]]:
        """Hand every written byte to the OS; the descriptors to fsync, and the retired files
        to close once the log naming their records is written (both for ``finish``)."""
        retired, self._retired = self._retired, []
        handles = [handle for _, handle in retired]
        if self._handle is not None:
            handles.append(self._handle)
        for handle in handles:
            handle.flush()
        return [handle.fileno() for handle in handles], retired

    def finish(self, retired: list[tuple[str, BinaryIO]]) -> None:
        """Close retired files under their final names (run after their log is written)."""
        for name, handle in retired:
            handle.close()
            os.replace(self.directory / (name + OPEN_SUFFIX), self.directory / name)
            self.closed_files.append(name)
        if retired:
            fsync_directory(self.directory)

    def abandon(self) -> None:
        """Close every file as it is, after an error: the next run cuts them back."""
        self.retire_current()
        for _, handle in self._retired:
            with suppress(OSError):
                handle.close()
        self._retired = []
