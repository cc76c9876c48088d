"""The app's icons as PNG, drawn here (no image library, no binary files in the repository).

A calm teal square with a soft white ring: the breathing circle of the app. Installable web
apps need PNG icons of 192 and 512 px; ``icon.svg`` in ``static/`` is the same picture.

Example
-------
>>> png_icon(192)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

BACKGROUND = (47, 111, 115)  # #2f6f73
RING = (246, 241, 232)  # #f6f1e8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=4)
def png_icon(size: int) -> bytes:
    """A ``size`` x ``size`` RGB PNG of the app icon (anti-aliased ring, safe for maskable crops)."""
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size]
    r = np.hypot(x - c, y - c) / size  # distance from the centre in icon widths
    outer, inner, edge = 0.30, 0.20, 1.0 / size
    # coverage of the ring, with one pixel of soft edge on both sides
    cover = np.clip((outer - r) / edge + 0.5, 0, 1) * np.clip((r - inner) / edge + 0.5, 0, 1)
    dot = np.clip((0.07 - r) / edge + 0.5, 0, 1)  # a small centre dot
    a = np.maximum(cover, dot)[..., None]
    rgb = (np.array(BACKGROUND) * (1 - a) + np.array(RING) * a).round().astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
