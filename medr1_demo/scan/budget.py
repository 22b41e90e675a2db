"""What decoding a scan may cost: big pictures are shrunk right after decoding, one at a time.

A 62 KB PNG can decode to 8000 x 8000 pixels; windowing that in float64 costs another 1.5 GB,
and four at once took 7.2 GB of a 24 GB machine. The model sees at most a few hundred pixels a
side (`medr1_demo.policy.picture`) and the page shows 1024, so a frame larger than
`WORKING_PIXELS` is reduced by a whole factor (block means) as soon as it is decoded, before any
windowing, which then runs in float32. Decoding a frame larger than `HEAVY_PIXELS` waits for the
previous such decode in this process to finish (`heavy_decode`), so concurrent uploads cannot add
up. The header's own sizes still bound everything first (`types.check_size`).

    factor = reduction(width, height)     # 1: keep; 4: 8000 x 8000 -> 2000 x 2000
    with heavy_decode(width * height): image.load()
"""

import math
import threading
from contextlib import contextmanager

import numpy as np

WORKING_PIXELS = 2048 * 2048  # a frame is worked on at most this size
HEAVY_PIXELS = 2048 * 2048  # decodes above this run one at a time per process
_HEAVY = threading.Lock()


def reduction(width: int, height: int) -> int:
    """The whole factor that brings a width x height frame within WORKING_PIXELS (1: none)."""
    pixels = width * height
    return 1 if pixels <= WORKING_PIXELS else math.ceil(math.sqrt(pixels / WORKING_PIXELS))


@contextmanager
def heavy_decode(pixels: int):
    """Hold the process's one heavy-decode slot while a frame of `pixels` decodes."""
    if pixels <= HEAVY_PIXELS:
        yield
        return
    with _HEAVY:
        yield


def reduce_array(values: np.ndarray, factor: int) -> np.ndarray:
    """`values` (rows, columns[, channels]) shrunk by `factor` with block means, in float32.

    Rows and columns beyond a whole number of blocks (fewer than `factor`) are dropped.
    """
    if factor <= 1:
        return values
    rows, columns = (values.shape[0] // factor) * factor, (values.shape[1] // factor) * factor
    blocks = values[:rows, :columns].reshape(
        rows // factor, factor, columns // factor, factor, *values.shape[2:]
    )
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def note(width: int, height: int, factor: int) -> str:
    """The plain-words note shown when a frame was reduced."""
    return (
        f"This picture is very large ({width} x {height} pixels), so it is shown and answered "
        f"at 1/{factor} of that ({width // factor} x {height // factor})."
    )
