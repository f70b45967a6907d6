"""Cached vectors round-trip exactly, and any damage is detected rather than returned."""

import numpy as np
import pytest

from services.cache.codec import decode_vector, encode_vector


def test_round_trip_is_exact() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    decoded = decode_vector(encode_vector(vector))
    assert decoded is not None
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, vector)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated
        lambda b: b[:5],  # shorter than the header
        lambda b: b"X" + b[1:],  # foreign magic
        lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]),  # flipped bits in the payload
        lambda b: b"[0.1, 0.2]",  # a JSON value from another writer
    ],
)
def test_damaged_entries_decode_to_none(damage) -> None:
    blob = encode_vector(np.ones(8, dtype=np.float32))
    assert decode_vector(damage(blob)) is None


def test_missing_entry_decodes_to_none() -> None:
    assert decode_vector(None) is None
