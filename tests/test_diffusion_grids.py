"""Sample grids written as PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_fixtures import one_thread  # noqa: F401
from PIL import Image

from expc.runtime.diffusion.grids import image_grid, save_image_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grid_places_each_tile_at_its_cell() -> None:
    images = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 1, 2, 2)
    grid = image_grid(images, columns=3, scale=2, gap=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1 + 5, 1 + 5, 0] == 255  # first tile -1, last +1
    assert grid[0, 0, 0] == 255  # the gap is white
    assert grid[1 + 5, 1 + 2 * 5, 0] == 255  # the missing sixth tile stays blank


def test_nearest_rows_follow_their_samples(tmp_path: Path) -> None:
    samples = torch.full((4, 3, 2, 2), -1.0)
    nearest = torch.full((4, 3, 2, 2), 1.0)
    grid = image_grid(samples, columns=4, nearest=nearest, scale=1, gap=0)
    assert grid.shape == (4, 8, 3)
    assert (grid[:2] == 0).all() and (grid[2:] == 255).all()
    path = save_image_grid(samples, tmp_path / "deep" / "grid.png", nearest=nearest)
    assert np.asarray(Image.open(path)).shape[-1] == 3
    with pytest.raises(ValueError, match="one image per sample"):
        image_grid(samples, nearest=nearest[:2])
