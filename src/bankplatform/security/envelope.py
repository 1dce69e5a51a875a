"""Envelope encryption of whole files: the on-disk format of every encrypted dataset.

Each file has a fresh 256-bit data key, wrapped by the KMS's primary key-encryption
key (KEK) with the dataset name as associated data (the KMS adds the key version),
so a file copied over another dataset's file fails to open. The payload is
encrypted in segments with AES-256-GCM (``cryptography``), following the STREAM
construction that Google Tink's streaming AEAD uses: the nonce is a random 7-byte
prefix, a 4-byte segment counter and a last-segment flag, so reordered, dropped or
truncated segments fail authentication. Segments keep memory bounded when a large
table is written.

File format, version 1::

    offset  size  field
    0       5     magic b"BPENC"
    5       1     format version (1)
    6       4     header length H, unsigned big-endian
    10      H     header, UTF-8 JSON: {"dataset", "key_version", "wrapped_key"
                  (base64), "nonce_prefix" (base64, 7 bytes), "segment_size"}
    10+H    ...   segments: AES-GCM(ciphertext || 16-byte tag) of ``segment_size``
                  plaintext bytes each; the last one may be shorter (or empty)

Segment associated data is ``magic || version || dataset name``. Re-wrapping a
file for key rotation rewrites only the header; the segments are copied as they
are (no re-encryption).
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from filelock import FileLock
from typing_extensions import Buffer

from bankplatform.errors import BankplatformError
from bankplatform.security.kms import (
    DataKeySource,
    KeyManagementError,
    KeyManagementService,
)

MAGIC = b"BPENC"
FORMAT_VERSION = 1
SEGMENT_SIZE = 1 << 20
_PREFIX = 7
_TAG = 16
_FIXED = len(MAGIC) + 1 + 4


class EnvelopeError(BankplatformError):
    """An encrypted file cannot be opened: the message says why."""


@dataclass(frozen=True)
class EnvelopeHeader:
    """The clear-text header of an encrypted file."""

    dataset: str
    key_version: int
    wrapped_key: bytes
    nonce_prefix: bytes
    segment_size: int

    def encode(self) -> bytes:
        """The header as stored: fixed prefix, length and JSON."""
        body = json.dumps(
            {
                "dataset": self.dataset,
                "key_version": self.key_version,
                "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
                "nonce_prefix": base64.b64encode(self.nonce_prefix).decode(),
                "segment_size": self.segment_size,
            },
            sort_keys=True,
        ).encode()
        return MAGIC + bytes([FORMAT_VERSION]) + struct.pack(">I", len(body)) + body


def key_context(dataset: str) -> bytes:
    """Associated data for wrapping a dataset's data key."""
    return f"bankplatform-dataset:{dataset}".encode()


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` starts with the encrypted-file magic."""
    with path.open("rb") as stream:
        return stream.read(len(MAGIC)) == MAGIC


def read_header(stream: BinaryIO) -> EnvelopeHeader:
    """Parse the header at the start of ``stream``; raises ``EnvelopeError`` if damaged."""
    fixed = stream.read(_FIXED)
    if not fixed:
        raise EnvelopeError("empty file")
    if len(fixed) < _FIXED or fixed[: len(MAGIC)] != MAGIC:
        raise EnvelopeError("not a bankplatform encrypted file (bad magic)")
    if fixed[len(MAGIC)] != FORMAT_VERSION:
        msg = f"unsupported encrypted-file format version {fixed[len(MAGIC)]}"
        raise EnvelopeError(msg)
    (length,) = struct.unpack(">I", fixed[len(MAGIC) + 1 :])
    body = stream.read(length)
    if len(body) != length:
        raise EnvelopeError("truncated header")
    try:
        fields = json.loads(body)
        return EnvelopeHeader(
            dataset=str(fields["dataset"]),
            key_version=int(fields["key_version"]),
            wrapped_key=base64.b64decode(fields["wrapped_key"], validate=True),
            nonce_prefix=base64.b64decode(fields["nonce_prefix"], validate=True),
            segment_size=int(fields["segment_size"]),
        )
    except (ValueError, KeyError, TypeError):
        raise EnvelopeError("damaged header") from None


class EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts into ``path`` (atomically, on ``close``).

    Writes go to a hidden temporary file beside ``path``, renamed over it only when
    the last segment is written, so a failed write leaves the previous file intact.
    """

    def __init__(
        self,
        path: Path,
        dataset: str,
        kms: DataKeySource,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        super().__init__()
        data_key, version, wrapped = kms.generate_data_key(key_context(dataset))
        self._header = EnvelopeHeader(
            dataset, version, wrapped, secrets.token_bytes(_PREFIX), segment_size
        )
        self._aead = AESGCM(data_key)
        self._aad = associated_data(dataset)
        self._path = path
        self._partial = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self._partial.open("wb")
        self._out.write(self._header.encode())
        self._out.flush()  # a rotation sees which key version this save uses
        self._pending = bytearray()
        self._segment = 0
        self._written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: Buffer) -> int:
        chunk = memoryview(data).cast("B")
        self._pending += chunk
        self._written += len(chunk)
        size = self._header.segment_size
        # Keep at least one byte back: the last segment must carry the last flag.
        while len(self._pending) > size:
            self._emit(bytes(self._pending[:size]), last=False)
            del self._pending[:size]
        return len(chunk)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._emit(bytes(self._pending), last=True)
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
            with replace_lock(self._path):
                os.replace(self._partial, self._path)
        finally:
            super().close()

    def abort(self) -> None:
        """Drop the partial file; the previous file (if any) stays as it was."""
        self._out.close()
        self._partial.unlink(missing_ok=True)
        super().close()

    def _emit(self, plain: bytes, *, last: bool) -> None:
        nonce = segment_nonce(self._header.nonce_prefix, self._segment, last=last)
        self._out.write(self._aead.encrypt(nonce, plain, self._aad))
        self._segment += 1


def sealing_with(kms: DataKeySource) -> Callable[[Path, str], EncryptingWriter]:
    """A writer factory: ``(path, dataset)`` opens ``path`` encrypted for ``dataset``
    with a data key from ``kms`` (how the synthetic extract is sealed)."""

    def seal(path: Path, dataset: str) -> EncryptingWriter:
        return EncryptingWriter(path, dataset, kms)

    return seal


def associated_data(dataset: str) -> bytes:
    """Associated data of every payload segment of ``dataset``'s files."""
    return MAGIC + bytes([FORMAT_VERSION]) + dataset.encode()


def segment_nonce(prefix: bytes, index: int, *, last: bool) -> bytes:
    """STREAM nonce: 7-byte prefix, 4-byte big-endian counter, last-segment flag."""
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def decrypt(blob: bytes, dataset: str, kms: DataKeySource) -> bytes:
    """Open an encrypted file's bytes as ``dataset``.

    Raises:
        EnvelopeError: Empty, truncated, damaged, another dataset's file, or a key
            that does not open it; never returns partial or altered data.
    """
    stream = io.BytesIO(blob)
    header = read_header(stream)
    aead = _data_key(header, dataset, kms)
    payload = memoryview(blob)[stream.tell() :]
    layout = _SegmentLayout.of(header, len(payload))
    return b"".join(
        _open_segment(aead, header, layout, index, payload[layout.span(index)], dataset)
        for index in range(layout.count)
    )


@dataclass(frozen=True)
class _SegmentLayout:
    """Where each segment of a payload lies; the last may be shorter."""

    segment_size: int
    payload_size: int
    count: int

    @classmethod
    def of(cls, header: EnvelopeHeader, payload_size: int) -> _SegmentLayout:
        stored = header.segment_size + _TAG
        count = max(1, -(-payload_size // stored))
        if payload_size - (count - 1) * stored < _TAG:
            raise EnvelopeError("truncated file (a segment is missing)")
        return cls(header.segment_size, payload_size, count)

    @property
    def plaintext_size(self) -> int:
        return self.payload_size - self.count * _TAG

    def span(self, index: int) -> slice:
        stored = self.segment_size + _TAG
        return slice(index * stored, min((index + 1) * stored, self.payload_size))


def _data_key(header: EnvelopeHeader, dataset: str, kms: DataKeySource) -> AESGCM:
    if header.dataset != dataset:
        msg = f"file belongs to dataset {header.dataset!r}, not {dataset!r}"
        raise EnvelopeError(msg)
    try:
        data_key = kms.unwrap(
            header.key_version, header.wrapped_key, key_context(dataset)
        )
    except KeyManagementError as error:
        raise EnvelopeError(str(error)) from None
    return AESGCM(data_key)


def _open_segment(
    aead: AESGCM,
    header: EnvelopeHeader,
    layout: _SegmentLayout,
    index: int,
    stored: Buffer,
    dataset: str,
) -> bytes:
    last = index == layout.count - 1
    nonce = segment_nonce(header.nonce_prefix, index, last=last)
    try:
        return aead.decrypt(nonce, bytes(stored), associated_data(dataset))
    except InvalidTag:
        reason = "truncated file or damaged last segment" if last else "damaged"
        msg = f"segment {index} fails authentication ({reason})"
        raise EnvelopeError(msg) from None


class DecryptingReader(io.RawIOBase):
    """A seekable, read-only view of an encrypted file's plaintext.

    Segments are decrypted when a read reaches them (their nonces are counter-based,
    so any segment opens alone), so pyarrow can read a parquet file's footer and
    then only the row groups and columns asked for; memory holds one segment. Every
    byte returned comes from a segment that passed authentication; a truncated or
    extended file fails on its last segment, which a parquet reader reads first.
    """

    def __init__(self, path: Path, dataset: str, kms: DataKeySource) -> None:
        super().__init__()
        self._file = path.open("rb")
        try:
            self._header = read_header(self._file)
            self._aead = _data_key(self._header, dataset, kms)
            self._start = self._file.tell()
            size = os.fstat(self._file.fileno()).st_size - self._start
            self._layout = _SegmentLayout.of(self._header, size)
        except BaseException:
            self._file.close()
            raise
        self._dataset = dataset
        self._position = 0
        self._cached: tuple[int, bytes] = (-1, b"")

    @property
    def size(self) -> int:
        """Plaintext bytes in the file."""
        return self._layout.plaintext_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}
        position = base[whence] + offset
        if position < 0:
            msg = f"negative seek position {position}"
            raise ValueError(msg)
        self._position = position
        return position

    def readinto(self, buffer: Buffer) -> int:
        target = memoryview(buffer).cast("B")
        done = 0
        while done < len(target) and self._position < self.size:
            index, within = divmod(self._position, self._layout.segment_size)
            plain = self._segment(index)
            taken = min(len(target) - done, len(plain) - within)
            target[done : done + taken] = plain[within : within + taken]
            done += taken
            self._position += taken
        return done

    def close(self) -> None:
        self._file.close()
        self._cached = (-1, b"")
        super().close()

    def _segment(self, index: int) -> bytes:
        if self._cached[0] != index:
            span = self._layout.span(index)
            self._file.seek(self._start + span.start)
            stored = self._file.read(span.stop - span.start)
            plain = _open_segment(
                self._aead, self._header, self._layout, index, stored, self._dataset
            )
            self._cached = (index, plain)
        return self._cached[1]


def replace_lock(path: Path) -> FileLock:
    """The lock a save's final rename and a key rotation's re-wrap of ``path`` share
    (one lock file per folder), so a re-wrap never overwrites a newer save."""
    return FileLock(path.parent / ".bankplatform-replace.lock")


def rewrap(path: Path, kms: KeyManagementService) -> tuple[int, int]:
    """Re-wrap a file's data key with the KMS's primary key; segments are copied as-is.

    Written to a temporary file, fsynced and renamed over ``path``: killed at any
    point, ``path`` holds either the old or the new header, both of which open. If
    a save replaced ``path`` meanwhile, that newer file is kept (it was written
    with the primary key) and the re-wrap is dropped.

    Returns:
        The key versions before and after.
    """
    with path.open("rb") as source:
        before = os.fstat(source.fileno())
        header = read_header(source)
        context = key_context(header.dataset)
        try:
            data_key = kms.unwrap(header.key_version, header.wrapped_key, context)
        except KeyManagementError as error:
            msg = f"{path}: {error}"
            raise EnvelopeError(msg) from None
        version, wrapped = kms.wrap(data_key, context)
        if version == header.key_version:
            return version, version
        renewed = EnvelopeHeader(
            header.dataset, version, wrapped, header.nonce_prefix, header.segment_size
        )
        temporary = path.with_name(f".{path.name}.rewrap")
        with temporary.open("wb") as target:
            target.write(renewed.encode())
            while chunk := source.read(SEGMENT_SIZE):
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
    with replace_lock(path):
        now = os.stat(path)
        if (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
            temporary.unlink()
            with path.open("rb") as stream:
                current = read_header(stream).key_version
            return current, current
        os.replace(temporary, path)
    return header.key_version, version
