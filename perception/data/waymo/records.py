"""TFRecord framing of Waymo v1 files, and the error every Waymo reader raises.

A ``.tfrecord`` file is a sequence of records: uint64 length (little-endian), uint32 masked CRC32C
of the 8 length bytes, the payload (one serialized ``Frame``), uint32 masked CRC32C of the payload;
``mask(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8`` (mod 2³²). :func:`read_records` checks both CRCs
and raises :class:`WaymoFormatError` (a ``ValueError``) naming the file, the record and its byte
offset on a mismatch ("CRC ... corrupt") or a short file ("truncated"); :func:`write_records` writes
the same framing atomically.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c

from perception.data.io import atomic_write_bytes

__all__ = ["WaymoFormatError", "masked_crc32c", "read_records", "write_records"]


class WaymoFormatError(ValueError):
    """A Waymo file is malformed; the message names the file (record, frame, lidar) and the problem."""


_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The TFRecord masked CRC32C of ``data``: ``((c >> 15) | (c << 17)) + 0xA282EAD8`` mod 2³²."""
    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str | os.PathLike, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the payloads of a TFRecord file, one record at a time (the file is streamed).

    Raises:
        FileNotFoundError: the file does not exist.
        WaymoFormatError: a length or data CRC does not match ("CRC", "corrupt"), or the file ends
            inside a record ("truncated"); the message names the file, the record index and the
            byte offset where the record starts.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            where = f"{path}: record {index} at byte offset {offset}"
            if len(header) < 12:
                raise WaymoFormatError(
                    f"{where}: the file is truncated ({len(header)} of the 12 header bytes, file size {size})"
                )
            (length,) = _LENGTH.unpack_from(header)
            (length_crc,) = _CRC.unpack_from(header, 8)
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                raise WaymoFormatError(f"{where}: CRC mismatch of the length field; the file is corrupt")
            end = offset + 12 + length + 4
            if end > size:
                raise WaymoFormatError(
                    f"{where}: the file is truncated (the record needs {length} payload bytes and ends "
                    f"at byte {end}, the file has {size})"
                )
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) != length or len(footer) != 4:
                raise WaymoFormatError(f"{where}: the file is truncated (short read)")
            if check_crc and masked_crc32c(payload) != _CRC.unpack(footer)[0]:
                raise WaymoFormatError(
                    f"{where}: CRC mismatch of the {length}-byte payload (bytes {offset + 12} to "
                    f"{offset + 12 + length}); the file is corrupt"
                )
            yield payload
            offset = end
            index += 1


def write_records(path: str | os.PathLike, payloads: Iterable[bytes | object], fsync: bool = True) -> Path:
    """Write payloads (bytes, or protos, serialized) as a TFRecord file with masked CRCs, atomically."""
    chunks: list[bytes] = []
    for payload in payloads:
        data = payload.SerializeToString() if hasattr(payload, "SerializeToString") else bytes(payload)
        length = _LENGTH.pack(len(data))
        chunks += [length, _CRC.pack(masked_crc32c(length)), data, _CRC.pack(masked_crc32c(data))]
    return atomic_write_bytes(path, b"".join(chunks), fsync=fsync)
