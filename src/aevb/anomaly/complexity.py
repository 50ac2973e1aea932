"""Input complexity of images as a lossless code length (Serra et al. 2020), and the image shape of rows.

The compressor is PNG's: each row (N, H*W) in [0, 1] is quantised to 8 bits (round(255 x), clipped to
0..255), laid out as an H x W grey image, every image row is prefixed with PNG filter byte 0 ("None"),
and the H * (W + 1) bytes are compressed with `zlib.compress(..., level=9)` (zlib's default window, memory
level and strategy). Those bytes are a valid PNG IDAT stream of the image (a PNG decoder reads them back);
L(x) = 8 * len(compressed bytes), in bits; PNG's fixed signature, headers and chunk framing are not counted.
The filter is fixed, not chosen per row as PNG encoders such as Pillow's do adaptively, so that L depends on
the image alone; values outside [0, 1] are clipped by the quantisation.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

MIN_SQUARE_PIXELS = 64


def infer_image_shape(a: np.ndarray) -> tuple[int, int] | None:
    """(H, W) = (s, s) when the rows have s*s >= 64 columns, all values in [0, 1]; else None (a table)."""
    d = a.shape[1]
    s = math.isqrt(d)
    if s * s != d or d < MIN_SQUARE_PIXELS or a.size == 0:
        return None
    return (s, s) if float(np.min(a)) >= 0.0 and float(np.max(a)) <= 1.0 else None


def filtered_bytes(row: np.ndarray, shape: tuple[int, int]) -> bytes:
    """The PNG scanlines of one row in [0, 1]: 8-bit grey, filter byte 0 before each of the H image rows."""
    h, w = shape
    pixels = np.clip(np.rint(np.asarray(row, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8).reshape(h, w)
    return np.concatenate([np.zeros((h, 1), dtype=np.uint8), pixels], axis=1).tobytes()


def png_code_length(a: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """L(x) in bits per row, (N,) float64: 8 * len(zlib level 9 of the filtered scanlines); 0 for a table."""
    if shape is None:
        return np.zeros(a.shape[0], dtype=np.float64)
    return np.array([8.0 * len(zlib.compress(filtered_bytes(r, shape), 9)) for r in a], dtype=np.float64)


def complexity_corrected(log_p, code_bits, weight: float):
    """log p(x) + mu L(x) ln 2 in nats for given log p(x) (nats) and code lengths L(x) (bits), both (N,) of one
    array kind (torch or numpy, float64); mu = `weight`. The correction of `scores.complexity_score`, on
    its own."""
    return log_p + float(weight) * code_bits * math.log(2.0)
