"""Tiling with overlap and a smooth blend window: plan, extract, stitch.

Tiles are rectangles of one shape per image, start on multiples of `align` (for
models that pool), the last tile on each axis is clamped to the edge, and each
tile's window is zero within `margin` pixels of an edge it shares with another
tile, then rises smoothly to one. With `margin` at least the model's receptive
radius, tiled inference equals whole-canvas inference.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TilePlan(NamedTuple):
    """Where the tiles of one image go."""

    height: int
    width: int
    canvas: tuple[int, int]
    tile: tuple[int, int]
    overlap: int
    margin: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` not below `value`."""
    return -(-value // multiple) * multiple


def fit_tile(size: int, longest: int, overlap: int, step: int) -> int:
    """The shortest tile side, a multiple of `step`, that covers `size` pixels in as few tiles of at most
    `longest` (a multiple of `step`) as overlap allows."""
    count = 1 if size <= longest else -(-(size - overlap) // (longest - overlap))
    return round_up(-(-(size + (count - 1) * overlap) // count), step)


def _starts(size: int, tile: int, stride: int) -> tuple[int, ...]:
    last = size - tile
    return tuple(range(0, last, stride)) + (last,) if last else (0,)


def plan_tiles(
    height: int, width: int, tile: int | tuple[int, int], overlap: int, margin: int | None = None, align: int = 1
) -> TilePlan:
    """Plan tiles of one shape for an image; the canvas is the image padded to `align` and at least one tile.

    Args:
        tile: the tiles' side, or their (height, width).
        margin: pixels at a shared tile edge that get no weight; default overlap // 4.
        align: tile sides, overlap and every tile origin are multiples of this.
    """
    margin = overlap // 4 if margin is None else margin
    tile = (tile, tile) if isinstance(tile, int) else tuple(tile)
    if any(side % align for side in tile) or overlap % align:
        raise ValueError(f"tile {tile} and overlap {overlap} must be multiples of {align}")
    if not (0 <= 2 * margin < overlap or overlap == margin == 0):
        raise ValueError(f"need 0 <= 2*margin < overlap, got margin={margin} overlap={overlap}")
    canvas = (max(tile[0], round_up(height, align)), max(tile[1], round_up(width, align)))
    if any(overlap >= side < length for side, length in zip(tile, canvas)):
        raise ValueError(f"tile {tile} must be longer than the overlap {overlap} where tiles meet")
    return TilePlan(
        height,
        width,
        canvas,
        tile,
        overlap,
        margin,
        *(_starts(length, side, side - overlap) for length, side in zip(canvas, tile)),
    )


def pad_to_canvas(image: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Mirror-pad an H x W x C image at the bottom and right to the plan's canvas."""
    pad_y, pad_x = plan.canvas[0] - image.shape[0], plan.canvas[1] - image.shape[1]
    return np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="symmetric")


def tile_origin(plan: TilePlan, index: int) -> tuple[int, int]:
    """Top-left corner of tile `index` (row by row) on the canvas."""
    return plan.ys[index // len(plan.xs)], plan.xs[index % len(plan.xs)]


def tile_at(image: np.ndarray, plan: TilePlan, index: int) -> np.ndarray:
    """Tile `index` of the image's canvas without building the canvas: a view, mirror-padded where it passes
    the bottom or right edge (the padding is under `align` pixels, or the tile holds the whole image)."""
    y, x = tile_origin(plan, index)
    tile = image[y : y + plan.tile[0], x : x + plan.tile[1]]
    pad_y, pad_x = plan.tile[0] - tile.shape[0], plan.tile[1] - tile.shape[1]
    return np.pad(tile, ((0, pad_y), (0, pad_x), (0, 0)), mode="symmetric") if pad_y or pad_x else tile


def extract_tiles(image: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Cut the image into an N x tile height x tile width x C stack, row by row."""
    return np.stack([tile_at(image, plan, index) for index in range(plan.count)])


def _ramp(length: int, overlap: int, margin: int) -> np.ndarray:
    """Weights by distance from a shared edge: 0 inside the margin, raised cosine, then 1."""
    d = np.arange(length, dtype=np.float64)
    width = max(overlap - 2 * margin, 1)
    phase = np.clip((d - margin + 0.5) / width, 0.0, 1.0)
    return np.where(d < margin, 0.0, 0.5 - 0.5 * np.cos(np.pi * phase))


def _axis_window(start: int, side: int, size: int, plan: TilePlan) -> np.ndarray:
    """1-D window for a tile of `side` at `start` on an axis of `size`; edges at the canvas border keep full weight."""
    window = np.ones(side)
    if plan.overlap == 0:
        return window
    ramp = _ramp(side, plan.overlap, plan.margin)
    if start > 0:
        window *= ramp
    if start + side < size:
        window *= ramp[::-1]
    return window


def _weight_sums(starts: tuple[int, ...], side: int, size: int, plan: TilePlan) -> np.ndarray:
    """Sum of the 1-D windows of all tiles along one axis."""
    total = np.zeros(size)
    for start in starts:
        total[start : start + side] += _axis_window(start, side, size, plan)
    return total


class Blend:
    """Blends tile outputs, arriving row by row, into `out` through a band one tile high.

    Once a tile row starts, the rows above it are final: they are normalised and written to `out`, so
    memory beyond `out` is one band and one tile. No tile reads rows above its own, so `out` may be the
    input itself. The weight map is the outer product of two 1-D sums and is never stored.

    Args:
        out: H x W x C array to write; where C differs from the tiles' channels, their mean is written.
    """

    def __init__(self, plan: TilePlan, out: np.ndarray, channels: int):
        self.plan, self.out, self.top = plan, out, 0
        self.band = np.zeros((plan.tile[0], plan.canvas[1], channels), np.float32)
        rows = _weight_sums(plan.ys, plan.tile[0], plan.canvas[0], plan)
        columns = _weight_sums(plan.xs, plan.tile[1], plan.canvas[1], plan)[: plan.width]
        self.row_scale = (1.0 / rows).astype(np.float32)[:, None, None]
        self.col_scale = (1.0 / columns).astype(np.float32)[:, None]
        self.weighted = np.empty((*plan.tile, channels), np.float32)  # one tile's weighted output, reused

    def add(self, index: int, tile: np.ndarray) -> None:
        """Blend in the output for tile `index`; tiles must come in index order."""
        y, x = tile_origin(self.plan, index)
        if y < self.top:
            raise ValueError(f"tile {index} arrived after its rows were written out")
        self._write_rows(y)
        (height, width), canvas = self.plan.tile, self.plan.canvas
        rows = _axis_window(y, height, canvas[0], self.plan).astype(np.float32)
        columns = _axis_window(x, width, canvas[1], self.plan).astype(np.float32)
        np.multiply(tile, rows[:, None, None], out=self.weighted)
        self.weighted *= columns[:, None]
        self.band[:, x : x + width] += self.weighted

    def finish(self) -> np.ndarray:
        """Write the last rows and return `out`."""
        self._write_rows(self.top + self.plan.tile[0])
        return self.out

    def _write_rows(self, until: int) -> None:
        """Normalise the band's rows above canvas row `until` into `out`, then move the band down to it."""
        count = until - self.top
        if count <= 0:
            return
        end = min(until, self.plan.height)
        if end > self.top:
            rows = self.band[: end - self.top, : self.plan.width]  # normalised in place: no band-sized temporaries
            rows *= self.row_scale[self.top : end]
            rows *= self.col_scale
            self.out[self.top : end] = rows if rows.shape[-1] == self.out.shape[-1] else rows.mean(-1, keepdims=True)
        self.band[:-count] = self.band[count:]
        self.band[-count:] = 0.0
        self.top = until


class Whole:
    """The output of a one-tile plan: the tile's top-left corner written straight to `out`, as Blend would."""

    def __init__(self, plan: TilePlan, out: np.ndarray):
        self.plan, self.out = plan, out

    def add(self, index: int, tile: np.ndarray) -> None:
        image = tile[: self.plan.height, : self.plan.width]
        if image.shape[-1] != self.out.shape[-1]:
            image = image.mean(-1, keepdims=True, dtype=np.float32)
        self.out[...] = image

    def finish(self) -> np.ndarray:
        return self.out


def blender(plan: TilePlan, out: np.ndarray, channels: int) -> Blend | Whole:
    """What writes a plan's tile outputs into `out`: Whole for one tile, else Blend."""
    return Whole(plan, out) if plan.count == 1 else Blend(plan, out, channels)


def stitch_tiles(tiles: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Blend an N x tile x tile x C stack back into the H x W x C image (float32)."""
    blend = Blend(plan, np.empty((plan.height, plan.width, tiles.shape[-1]), np.float32), tiles.shape[-1])
    for index, tile in enumerate(tiles):
        blend.add(index, tile)
    return blend.finish()
