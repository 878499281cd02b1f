"""Synthetic mammogram pixels: a breast phantom with smooth texture and bright lesions.

Values follow MONOCHROME2 (bright = dense) in 12 bits: background exactly 0, tissue
about 600-2600, lesions up to about 3900. The breast is a rounded half-ellipse
against the chest wall: at x = 0, or at x = columns - 1 (`chest_wall_right`, as for a
right breast in the usual orientation); an `upside_down` image has its rows reversed
(the pectoral muscle of an MLO view at the bottom).
Boxes are [ymin, xmin, ymax, xmax] with exclusive max, as img[ymin:ymax, xmin:xmax].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_VALUE = 4095  # 12-bit data
FAT = 650.0  # tissue value of fat
GLAND = 1600.0  # extra value of fully dense tissue
PECTORAL = 300.0  # extra value of the pectoral muscle (MLO views)
NOISE_SD = 18.0  # per-pixel quantum noise
SKIN = 0.06  # width of the skin-line falloff, relative to the breast's reach
WINDOW = (1500.0, 2400.0)  # WindowCenter, WindowWidth that show the tissue
TEXTURE_OCTAVES = ((5, 4, 1.0), (14, 11, 0.5), (36, 28, 0.25))  # grid rows, cols, weight
FRAME_VARIATION = 0.12  # share of the texture that changes between DBT frames
LESION_AMPLITUDE = (1000.0, 1300.0)
MIN_BOX_SIDE = 6  # pixels
ATTEMPTS = 2000  # rejection-sampling budget for one box

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Lesion:
    """A bright blob centred in `box`; for DBT brightest on `frames` (0-based)."""

    box: Box
    amplitude: float
    frames: tuple[int, ...] = ()


@dataclass(frozen=True)
class BreastShape:
    """Geometry of one synthetic breast; all fractions are of the image size."""

    rows: int
    cols: int
    chest_wall_right: bool  # chest wall at x = cols - 1, else at x = 0
    reach: float  # how far the breast reaches from the chest wall, fraction of cols
    centre: float  # vertical centre of the breast at the chest wall, fraction of rows
    half_height: float  # vertical half extent at the chest wall, fraction of rows
    exponent: float  # superellipse exponent; 2 is an ellipse, more is boxier
    pectoral: tuple[float, float] | None  # MLO muscle triangle: (width, height) fractions
    upside_down: bool = False  # rows reversed: y counted from the bottom

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        rows: int,
        cols: int,
        view: str,
        chest_wall_right: bool,
        upside_down: bool = False,
    ) -> BreastShape:
        """A plausible breast for a view: MLO views are taller and show the pectoral muscle."""
        oblique = "MLO" in view or view in ("ML", "LM")
        return cls(
            rows=rows,
            cols=cols,
            chest_wall_right=chest_wall_right,
            upside_down=upside_down,
            reach=float(rng.uniform(0.55, 0.75)),
            centre=float(rng.uniform(0.42, 0.48) if oblique else rng.uniform(0.47, 0.53)),
            half_height=float(rng.uniform(0.5, 0.56) if oblique else rng.uniform(0.36, 0.44)),
            exponent=float(rng.uniform(1.8, 2.4)),
            pectoral=(float(rng.uniform(0.2, 0.3)), float(rng.uniform(0.3, 0.45)))
            if oblique
            else None,
        )

    def depth(self, x: np.ndarray) -> np.ndarray:
        """Distance of pixel column(s) `x` from the chest wall, in pixels (pixel centres)."""
        x = np.asarray(x, dtype=np.float32) + 0.5
        return self.cols - x if self.chest_wall_right else x

    def height(self, y: np.ndarray) -> np.ndarray:
        """Distance of pixel row(s) `y` from the top of the breast's own frame (pixel centres)."""
        y = np.asarray(y, dtype=np.float32) + 0.5
        return self.rows - y if self.upside_down else y

    def radius_power(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Superellipse radius to the power `exponent`: below 1 inside the breast."""
        u = self.depth(x) / np.float32(self.reach * self.cols)
        v = (self.height(y) - self.centre * self.rows) / np.float32(self.half_height * self.rows)
        return np.abs(u) ** self.exponent + np.abs(v) ** self.exponent

    def weight(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Tissue weight in [0, 1]: 0 on background, falling off towards the skin line."""
        inside = (1 - self.radius_power(y, x)) / np.float32(self.exponent * SKIN)
        return np.sqrt(np.clip(inside, 0, 1))

    def muscle(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Pectoral muscle weight in [0, 1] (0 everywhere on CC views)."""
        if self.pectoral is None:
            return np.zeros(np.broadcast_shapes(np.shape(y), np.shape(x)), dtype=np.float32)
        width, height = self.pectoral
        q = self.depth(x) / np.float32(width * self.cols) + (
            (self.height(y) - 0.5) / np.float32(height * self.rows)
        )
        return np.clip((1 - q) / np.float32(0.2), 0, 1)

    def is_clear(self, box: Box) -> bool:
        """Whether corners and centre of `box` lie well inside tissue, off the muscle."""
        ymin, xmin, ymax, xmax = box
        ys = np.array([ymin, ymin, ymax - 1, ymax - 1, (ymin + ymax) // 2])
        xs = np.array([xmin, xmax - 1, xmin, xmax - 1, (xmin + xmax) // 2])
        inside = (0 <= ymin < ymax <= self.rows) and (0 <= xmin < xmax <= self.cols)
        return inside and bool(
            np.all(self.weight(ys, xs) > 0.5) and np.all(self.muscle(ys, xs) == 0)
        )

    def is_background(self, box: Box) -> bool:
        """Whether corners and centre of `box` lie off the breast (tissue weight 0)."""
        ymin, xmin, ymax, xmax = box
        ys = np.array([ymin, ymin, ymax - 1, ymax - 1, (ymin + ymax) // 2])
        xs = np.array([xmin, xmax - 1, xmin, xmax - 1, (xmin + xmax) // 2])
        return bool(np.all(self.weight(ys, xs) == 0))

    def _box_size(self, rng: np.random.Generator, side: tuple[float, float]) -> tuple[int, int]:
        width = max(MIN_BOX_SIDE, round(rng.uniform(*side) * self.cols))
        height = max(MIN_BOX_SIDE, round(width * rng.uniform(0.7, 1.4)))
        return height, width

    def _box_from_depth(self, top: int, near: int, height: int, width: int) -> Box:
        """Box whose chest-wall side lies `near` pixels from the chest wall, `top` pixels
        from the top of the breast's own frame."""
        if self.upside_down:
            top = self.rows - top - height
        if self.chest_wall_right:
            return (top, self.cols - near - width, top + height, self.cols - near)
        return (top, near, top + height, near + width)

    def inner_box(
        self,
        rng: np.random.Generator,
        side: tuple[float, float] = (0.04, 0.14),
        avoid: tuple[Box, ...] = (),
        max_depth: float | None = None,
    ) -> Box:
        """A random box on tissue, overlapping none of `avoid`, reaching at most `max_depth`."""
        limit = self.cols if max_depth is None else max_depth
        for _ in range(ATTEMPTS):
            height, width = self._box_size(rng, side)
            top = int(rng.integers(0, max(1, self.rows - height)))
            near = int(rng.integers(0, max(1, round(limit) - width)))
            box = self._box_from_depth(top, near, height, width)
            if self.is_clear(box) and not any(_overlap(box, other) for other in avoid):
                return box
        raise RuntimeError("could not place a lesion box on the synthetic breast")

    def chest_wall_box(self, rng: np.random.Generator, overshoot: int = 0) -> Box:
        """A box touching the chest-wall edge, extending `overshoot` pixels beyond it."""
        height, width = self._box_size(rng, (0.06, 0.1))
        low = max(self.centre, self.pectoral[1] if self.pectoral else 0) * self.rows
        top = round(rng.uniform(low, low + 0.2 * self.rows))
        return self._box_from_depth(top, -overshoot, height, width + overshoot)

    def skin_line_box(self, rng: np.random.Generator, inside: float = 0.7) -> Box:
        """A box across the skin line at the breast's tip, `inside` of its width on tissue."""
        height, width = self._box_size(rng, (0.06, 0.1))
        top = round(self.centre * self.rows - height / 2)
        near = round(self.reach * self.cols - inside * width)
        return self._box_from_depth(top, near, height, width)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _smoothing_matrix(n: int, knots: int) -> np.ndarray:
    """(n, knots) Gaussian interpolation weights mapping a coarse grid onto n pixels."""
    centres = np.linspace(0, n, knots, dtype=np.float32)
    pixels = np.arange(n, dtype=np.float32)[:, None] + 0.5
    sigma = np.float32(n / max(knots - 1, 1))
    weights = np.exp(-(((pixels - centres) / sigma) ** 2))
    return weights / weights.sum(axis=1, keepdims=True)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], octaves: tuple = TEXTURE_OCTAVES
) -> np.ndarray:
    """Low-frequency noise scaled to [0, 1]: sum of upsampled random grids."""
    rows, cols = shape
    field = np.zeros(shape, dtype=np.float32)
    for grid_rows, grid_cols, weight in octaves:
        grid = rng.standard_normal((grid_rows, grid_cols), dtype=np.float32)
        field += np.float32(weight) * (
            _smoothing_matrix(rows, grid_rows) @ grid @ _smoothing_matrix(cols, grid_cols).T
        )
    field -= field.min()
    field /= max(float(field.max()), 1e-6)
    return field


@dataclass(frozen=True)
class _Anatomy:
    """Per-pixel float32 layers of one breast; products with the tissue weight."""

    base: np.ndarray  # fat + glandular texture + muscle, zero on background
    weight: np.ndarray  # tissue weight


def _anatomy(shape: BreastShape, rng: np.random.Generator) -> _Anatomy:
    y = np.arange(shape.rows)[:, None]
    x = np.arange(shape.cols)[None, :]
    weight = shape.weight(y, x)
    density = smooth_noise(rng, (shape.rows, shape.cols))
    density *= 1 - np.float32(0.5) * np.minimum(shape.radius_power(y, x), 1)  # denser centrally
    base = np.float32(FAT) + np.float32(GLAND) * density
    base += np.float32(PECTORAL) * shape.muscle(y, x)
    base += np.float32(NOISE_SD) * rng.standard_normal(base.shape, dtype=np.float32)
    base *= weight
    return _Anatomy(base=base, weight=weight)


def _blob(box: Box, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Unit Gaussian blob centred in `box`, cut to the image: (window, values) or None."""
    ymin, xmin, ymax, xmax = box
    cy, cx = (ymin + ymax) / 2, (xmin + xmax) / 2
    sy, sx = max(ymax - ymin, 2) / 3.5, max(xmax - xmin, 2) / 3.5
    y0, y1 = max(0, int(cy - 3 * sy)), min(shape[0], int(cy + 3 * sy) + 1)
    x0, x1 = max(0, int(cx - 3 * sx)), min(shape[1], int(cx + 3 * sx) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    gy = np.exp(-0.5 * ((np.arange(y0, y1) + 0.5 - cy) / sy) ** 2).astype(np.float32)
    gx = np.exp(-0.5 * ((np.arange(x0, x1) + 0.5 - cx) / sx) ** 2).astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), np.outer(gy, gx)


def _add_lesion(image: np.ndarray, weight: np.ndarray, lesion: Lesion, gain: float) -> None:
    """Add a lesion's blob, scaled by `gain`, to the tissue of `image` in place."""
    blob = _blob(lesion.box, image.shape)
    if blob is not None and gain > 0.01:
        window, values = blob
        image[window] += np.float32(lesion.amplitude * gain) * values * (weight[window] > 0)


def _to_uint16(image: np.ndarray, out: np.ndarray) -> None:
    np.clip(image, 0, MAX_VALUE, out=image)
    np.rint(image, out=image)
    out[...] = image


def render_2d(shape: BreastShape, lesions: list[Lesion], rng: np.random.Generator) -> np.ndarray:
    """A (rows, cols) uint16 mammogram with the given lesions."""
    anatomy = _anatomy(shape, rng)
    for lesion in lesions:
        _add_lesion(anatomy.base, anatomy.weight, lesion, 1.0)
    out = np.empty(anatomy.base.shape, dtype=np.uint16)
    _to_uint16(anatomy.base, out)
    return out


def frame_gain(lesion: Lesion, frame: int) -> float:
    """Lesion brightness on a DBT frame: 1 on its listed frames, fading with distance."""
    if not lesion.frames:
        return 0.0
    distance = min(abs(frame - listed) for listed in lesion.frames)
    return float(np.exp(-0.5 * (distance / 1.5) ** 2))


def render_dbt(
    shape: BreastShape, lesions: list[Lesion], n_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """A (frames, rows, cols) uint16 tomosynthesis volume; texture drifts across frames."""
    anatomy = _anatomy(shape, rng)
    octaves = TEXTURE_OCTAVES[1:]
    drift = [
        np.float32(FRAME_VARIATION * GLAND)
        * anatomy.weight
        * (smooth_noise(rng, anatomy.base.shape, octaves) - 0.5)
        for _ in range(2)
    ]
    volume = np.empty((n_frames, shape.rows, shape.cols), dtype=np.uint16)
    frame = np.empty_like(anatomy.base)
    for index in range(n_frames):
        angle = np.pi * index / n_frames
        np.multiply(drift[0], np.float32(np.cos(angle)), out=frame)
        frame += np.float32(np.sin(angle)) * drift[1]
        frame += anatomy.base
        for lesion in lesions:
            _add_lesion(frame, anatomy.weight, lesion, frame_gain(lesion, index))
        _to_uint16(frame, volume[index])
    return volume
