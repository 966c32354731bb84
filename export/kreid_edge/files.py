"""File writing shared by kreid and kreid_edge: atomic writes and model fingerprints.

Every file kreid writes goes through :func:`atomic_write`: a temporary file in
the destination's folder, flushed and fsynced, then renamed over the
destination. A crash (even SIGKILL) leaves either the old file or the new
one; an error (a full disk) removes the temporary file and names the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import Iterator


class WriteError(OSError):
    """Writing a file failed; the message names the path."""


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", suffix: str = "") -> Iterator:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    ``suffix`` is appended to the temporary name (writers such as
    ``numpy.savez`` or Keras that insist on an extension). Yields the open
    file, or the temporary *path* when ``mode`` is ``None`` (for writers that
    take a file name).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", suffix=suffix,
                               dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)        # as open() would: mkstemp makes it owner-only
    try:
        if mode is None:
            os.close(fd)
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(exc.errno, f"could not write {path}: {exc.strerror or exc}") from exc
        raise


def write_bytes(path: str, data: bytes) -> str:
    with atomic_write(path) as f:
        f.write(data)
    return path


def write_text(path: str, text: str) -> str:
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


def file_fingerprint(path: str) -> str:
    """SHA-256 (first 16 hex digits) of a file, or of every file below a folder."""
    digest = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
    for name in files:
        digest.update(os.path.relpath(name, path).encode() if name != path else b"")
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
