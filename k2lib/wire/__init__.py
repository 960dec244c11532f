"""The wire: the trade record, its fixed-width codec, and the partitioner Java clients use.

Byte layout in docs/wire-format.md; versioning in ADR 002.
"""

from k2lib.wire.codec import DecodeResult, Reject, decode_batch, encode_batch
from k2lib.wire.schema import Trade, TradeBatch

__all__ = ["DecodeResult", "Reject", "Trade", "TradeBatch", "decode_batch", "encode_batch"]
