"""Image data for the diffusion experiment: the procedural family and local files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_fixtures import one_thread  # noqa: F401
from PIL import Image

from expc.runtime import RunError
from expc.runtime.diffusion.data import (
    load_images,
    procedural_shapes,
    shapes_splits,
    split_images,
    to_unit_range,
)
from expc.runtime.diffusion.memorization import nearest_two

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_are_deterministic_nested_and_in_range() -> None:
    small = procedural_shapes(8, seed=3)
    large = procedural_shapes(20, seed=3)
    assert small.shape == (8, 1, 16, 16) and small.dtype == torch.float32
    assert torch.equal(large[:8], small)  # training sets are nested in n
    assert torch.equal(procedural_shapes(8, seed=3), small)
    assert not torch.equal(procedural_shapes(8, seed=4), small)
    assert small.min() >= -1.0 and small.max() <= 1.0
    color = procedural_shapes(4, seed=0, size=12, channels=3)
    assert color.shape == (4, 3, 12, 12)
    assert (color[:, 0] != color[:, 1]).any()  # channels carry different colours


def test_images_have_structure_a_memorization_test_can_rely_on() -> None:
    images = procedural_shapes(64, seed=0)
    # Bright shapes on a dark background: both ends of the range are used in every image.
    per_image = images.flatten(1)
    assert (per_image.max(1).values > 0.0).all() and (per_image.min(1).values < -0.3).all()
    # Between images the pixels vary: not one template with noise.
    assert images.std(0).mean() > 0.3


def test_held_out_is_disjoint_and_chance_near_duplicates_are_rare() -> None:
    splits = shapes_splits(256, 128, seed=0)
    assert splits.shape == (1, 16, 16)
    distance = torch.cdist(splits.held_out.flatten(1), splits.train.flatten(1))
    assert distance.min() > 1.0  # no held-out image equals a training image
    # Real images from the family are not "memorized" copies of the training set: the
    # memorization criterion's chance rate is 0 here (measured: smallest ratio ~0.6).
    assert (nearest_two(splits.held_out, splits.train).ratio < 1 / 3).sum() == 0


def test_bad_requests_are_user_errors() -> None:
    with pytest.raises(RunError, match="channels"):
        procedural_shapes(2, seed=0, channels=2)
    with pytest.raises(RunError, match="n >= 1"):
        shapes_splits(0, 4, seed=0)


def test_to_unit_range_infers_common_ranges() -> None:
    as_bytes = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = to_unit_range(as_bytes)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([[-1.0, 1.0], [-0.6, -0.2]]))
    unit = to_unit_range(np.full((2, 3, 3, 3), 0.5, dtype=np.float32))
    assert unit.shape == (2, 3, 3, 3) and torch.allclose(unit, torch.zeros(1))
    signed = to_unit_range(np.full((1, 2, 2), -0.5, dtype=np.float64))
    assert torch.allclose(signed, torch.full((1, 1, 2, 2), -0.5))
    with pytest.raises(RunError, match="value_range"):
        to_unit_range(np.full((1, 2, 2), 7.0))
    assert torch.allclose(to_unit_range(np.full((1, 2, 2), 7.0), (5.0, 9.0)), torch.zeros(1))
    with pytest.raises(RunError, match=r"\(N, H, W\)"):
        to_unit_range(np.zeros((2, 2)))


def test_npy_and_png_folder_load_the_same_pixels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "images.npy", pixels)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    from_npy = load_images(tmp_path / "images.npy")
    from_png = load_images(folder)
    assert from_npy.shape == (5, 1, 8, 8)
    assert torch.equal(from_npy, from_png)
    resized = load_images(folder, size=4)
    assert resized.shape == (5, 1, 4, 4)
    assert load_images(folder, channels=3).shape == (5, 3, 8, 8)
    with pytest.raises(RunError, match="not found"):
        load_images(tmp_path / "missing")
    with pytest.raises(RunError, match="channels"):
        load_images(tmp_path / "images.npy", channels=3)


def test_split_images_is_seeded_nested_and_disjoint() -> None:
    images = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1)
    a = split_images(images, 5, 6, seed=1)
    b = split_images(images, 9, 6, seed=1)
    assert torch.equal(a.train, b.train[:5]) and torch.equal(a.held_out, b.held_out)
    assert not set(b.train.flatten().tolist()) & set(b.held_out.flatten().tolist())
    with pytest.raises(RunError, match="n \\+ n_held_out"):
        split_images(images, 15, 6, seed=1)
