"""Binary encoding of cached vectors, with an integrity check.

LangChain's ``CacheBackedEmbeddings`` stores vectors as JSON text; a float32 blob is 4 bytes per
dimension instead of ~20 and decodes with one ``frombuffer``. The CRC lets a corrupt or truncated
entry be detected and treated as a miss instead of returning garbage.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_MAGIC = b"E1"
_HEADER = struct.Struct("<2sII")  # magic, dimension, crc32 of the float32 payload


def encode_vector(vector: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return _HEADER.pack(_MAGIC, vector.shape[-1], zlib.crc32(payload)) + payload


def decode_vector(blob: bytes | None) -> np.ndarray | None:
    """The vector, or None when the blob is missing, truncated, foreign or fails its checksum."""
    if blob is None or len(blob) < _HEADER.size:
        return None
    magic, dim, crc = _HEADER.unpack_from(blob)
    payload = memoryview(blob)[_HEADER.size :]
    if magic != _MAGIC or len(payload) != 4 * dim or zlib.crc32(payload) != crc:
        return None
    return np.frombuffer(payload, dtype="<f4")
