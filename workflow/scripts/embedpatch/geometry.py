"""Box and window geometry in image pixel coordinates (pure functions, no I/O).

A box is ``(ymin, xmin, ymax, xmax)`` with maxima exclusive: its pixels are
``img[ymin:ymax, xmin:xmax]``, as EMBED's ROI_coords and the dataset's documentation
have them. A box with ymin >= ymax or xmin >= xmax is empty (area 0). A window is a
size x size box given by its top-left corner.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

Box = tuple[int, int, int, int]


def box_area(box: Box) -> int:
    """Number of pixels of a box (0 when empty or inverted)."""
    ymin, xmin, ymax, xmax = box
    return max(0, ymax - ymin) * max(0, xmax - xmin)


def intersection(a: Box, b: Box) -> Box:
    """The box both `a` and `b` cover (empty when they share no pixel)."""
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1]; 0 when both are empty."""
    inter = box_area(intersection(a, b))
    union = box_area(a) + box_area(b) - inter
    return inter / union if union else 0.0


def clip_box(box: Box, rows: int, columns: int) -> Box | None:
    """The part of `box` inside a rows x columns image; None when no pixel is inside."""
    clipped = intersection(box, (0, 0, rows, columns))
    return clipped if box_area(clipped) else None


def mirror_box_x(box: Box, columns: int) -> Box:
    """The box mirrored left-right in an image `columns` wide (x -> columns - x)."""
    ymin, xmin, ymax, xmax = box
    return (ymin, columns - xmax, ymax, columns - xmin)


def mirror_box_y(box: Box, rows: int) -> Box:
    """The box mirrored top-bottom in an image `rows` high (y -> rows - y)."""
    ymin, xmin, ymax, xmax = box
    return (rows - ymax, xmin, rows - ymin, xmax)


class Mirror(StrEnum):
    """A mirroring of the image plane onto itself: none, left-right, top-bottom or both."""

    NONE = "none"
    X = "x"  # left-right: x -> columns - x
    Y = "y"  # top-bottom: y -> rows - y
    XY = "xy"  # both (a half turn)

    @classmethod
    def of(cls, x: bool, y: bool) -> Mirror:
        """The mirror flipping x when `x` and y when `y`."""
        return {(False, False): cls.NONE, (True, False): cls.X, (False, True): cls.Y}.get(
            (x, y), cls.XY
        )

    @property
    def flips_x(self) -> bool:
        return self in (Mirror.X, Mirror.XY)

    @property
    def flips_y(self) -> bool:
        return self in (Mirror.Y, Mirror.XY)

    def apply(self, box: Box, rows: int, columns: int) -> Box:
        """`box` mirrored in a rows x columns image (each mirror is its own inverse)."""
        if self.flips_x:
            box = mirror_box_x(box, columns)
        return mirror_box_y(box, rows) if self.flips_y else box


def swap_axes(box: Box) -> Box:
    """The box read the other way round: ``[xmin, ymin, xmax, ymax]`` as ``(ymin, xmin, ...)``."""
    first, second, third, fourth = box
    return (second, first, fourth, third)


def inside_image(box: Box, rows: int, columns: int) -> bool:
    """Whether every pixel of a (non-empty) box lies in a rows x columns image."""
    ymin, xmin, ymax, xmax = box
    return 0 <= ymin < ymax <= rows and 0 <= xmin < xmax <= columns


def grow_box(box: Box, margin: int) -> Box:
    """`box` grown by `margin` pixels on every side."""
    ymin, xmin, ymax, xmax = box
    return ymin - margin, xmin - margin, ymax + margin, xmax + margin


def touches_any(box: Box, boxes: Sequence[Box]) -> bool:
    """Whether `box` shares at least one pixel with any of `boxes`."""
    return any(box_area(intersection(box, other)) > 0 for other in boxes)


def window_box(y0: int, x0: int, size: int) -> Box:
    """The box of the size x size window whose top-left pixel is (y0, x0)."""
    return y0, x0, y0 + size, x0 + size


def fit_start(start: int, extent: int, size: int) -> int:
    """`start` of a `size` window moved so the window lies in [0, extent); 0 when the
    extent is smaller than the window (the window then overhangs the far side)."""
    return max(0, min(start, extent - size))


def window_around(y: int, x: int, rows: int, columns: int, size: int) -> tuple[int, int]:
    """Top-left of the size x size window whose centre (y0 + size // 2, x0 + size // 2) is
    pixel (y, x), moved inside the image (at 0 along a dimension smaller than `size`)."""
    return fit_start(y - size // 2, rows, size), fit_start(x - size // 2, columns, size)
