"""PNG grids of images in [-1, 1] (samples, optionally above their nearest training images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(
    images: torch.Tensor,
    *,
    columns: int = 8,
    nearest: torch.Tensor | None = None,
    scale: int = 4,
    gap: int = 2,
) -> np.ndarray:
    """One uint8 array (H, W, C) tiling the images `columns` wide, each pixel repeated
    `scale` times. With `nearest` (one training image per sample), every row of samples is
    followed by a row of the training images they are nearest to, to show copies at a glance.
    """
    tiles = _to_uint8(images)
    rows_of = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    if nearest is not None:
        if nearest.shape != images.shape:
            raise ValueError("nearest must hold one image per sample")
        partners = _to_uint8(nearest)
        paired = []
        for start, row in zip(range(0, len(tiles), columns), rows_of, strict=True):
            paired += [row, partners[start : start + columns]]
        rows_of = paired
    height, width, channels = tiles.shape[1:]
    cell_h, cell_w = height * scale + gap, width * scale + gap
    canvas = np.full((len(rows_of) * cell_h + gap, columns * cell_w + gap, channels), 255, np.uint8)
    for r, row in enumerate(rows_of):
        for c, tile in enumerate(row):
            big = tile.repeat(scale, axis=0).repeat(scale, axis=1)
            top, left = gap + r * cell_h, gap + c * cell_w
            canvas[top : top + height * scale, left : left + width * scale] = big
    return canvas


def save_image_grid(
    images: torch.Tensor, path: Path, *, columns: int = 8, nearest: torch.Tensor | None = None
) -> Path:
    """Write `image_grid(...)` as a PNG (parent folders are created)."""
    from PIL import Image

    grid = image_grid(images, columns=columns, nearest=nearest)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path
