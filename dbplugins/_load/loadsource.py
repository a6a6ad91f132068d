"""The file ``dbp load`` reads, readable again from its start: a path (``.gz`` decompressed) is opened again;
stdin is kept as it is read (in memory up to 16 MiB, then in a temporary file), since the COPY path may give
the file over to the Python path after reading part of it (:mod:`dbplugins._load.loadcopy`)."""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
from typing import IO, Any, cast

__all__ = ["Source"]

#: Bytes per read when the caller gives no size.
BLOCK = 1024 * 1024
#: What the spool of stdin keeps in memory before it moves to a temporary file.
_SPOOL_MEMORY = 16 * 1024 * 1024


class _Recorder:
    """stdin read from the start, every time: what earlier readings took of it is in ``spool``, and what this
    one takes beyond that is added, so that any later reading sees the whole input again."""

    def __init__(self, spool: Any, stream: IO[bytes]) -> None:
        self.spool = spool
        self.stream = stream
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = n if n > 0 else BLOCK
        self.spool.seek(self.pos)
        data: bytes = self.spool.read(n)
        if not data:
            read = getattr(self.stream, "read1", self.stream.read)
            data = read(n)
            self.spool.seek(0, os.SEEK_END)
            self.spool.write(data)
        self.pos += len(data)
        return data

    read1 = read

    def tell(self) -> int:
        return self.pos


class Source:
    """A file name (``-`` for stdin, ``.gz`` decompressed) that can be opened again from its start."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._spool: Any = None  # stdin as read so far, once a reading asked to be replayable
        self._opened: list[IO[bytes]] = []
        self.raw: Any = None  # the byte stream whose position drives the progress bar

    @property
    def stdin(self) -> bool:
        return self.path == "-"

    def size(self) -> int | None:
        if self.stdin:
            return None
        return os.stat(self.path).st_size or None

    def position(self) -> int:
        """Bytes of the file read so far (the progress bar's position)."""
        raw = self.raw
        return int(raw.tell()) if raw is not None and not raw.closed else 0

    def open(self, *, replayable: bool = False) -> IO[bytes]:
        """The file's bytes from the start. ``replayable``: stdin is kept as it is read (in a temporary file
        beyond 16 MiB), and this and every later open read it from the start."""
        self._close_files()
        if self.stdin:
            stdin = sys.stdin.buffer
            if self._spool is None and not replayable:
                return stdin
            if self._spool is None:
                self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 - close()
            return cast(IO[bytes], _Recorder(self._spool, stdin))
        raw = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._opened.append(raw)
        self.raw = raw
        if self.path.lower().endswith(".gz"):
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
            self._opened.append(stream)
            return stream
        return raw

    def _close_files(self) -> None:
        for f in reversed(self._opened):
            f.close()
        self._opened.clear()

    def close(self) -> None:
        self._close_files()
        if self._spool is not None:
            self._spool.close()
