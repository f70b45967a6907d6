"""The cache layer shared by every service: keys, value codecs, and pluggable byte stores."""

from services.cache.store import ByteStore, open_store

__all__ = ["ByteStore", "open_store"]
