"""The memorization criterion (nearest / second-nearest training image, ratio < 1/3)."""

from __future__ import annotations

import pytest
import torch
from diffusion_fixtures import one_thread  # noqa: F401

from expc.runtime.diffusion.memorization import memorization_fraction, memorized, nearest_two

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def train() -> torch.Tensor:
    # Ten well-separated random images in [-1, 1].
    return torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_exact_copies_count(train: torch.Tensor) -> None:
    copies = train[[3, 3, 7]]
    result = nearest_two(copies, train)
    assert result.first.tolist() == [0.0, 0.0, 0.0]
    assert result.index.tolist() == [3, 3, 7]
    assert memorization_fraction(copies, train) == 1.0


def test_a_near_duplicate_of_one_training_image_counts(train: torch.Tensor) -> None:
    noise = torch.randn(train[:1].shape, generator=torch.Generator().manual_seed(1))
    near = train[2:3] + 0.05 * noise
    ratio = nearest_two(near, train).ratio.item()
    assert ratio < 0.2  # measured distances: ~0.4 to the image, ~4.5 to the next one
    assert memorized(near, train).tolist() == [True]


def test_an_image_between_two_training_images_does_not_count(train: torch.Tensor) -> None:
    # Near-duplicates of two training images at once: the average of two of them.
    between = (train[1:2] + train[5:6]) / 2
    ratio = nearest_two(between, train).ratio.item()
    assert ratio == pytest.approx(1.0, abs=1e-6)
    assert not memorized(between, train).item()
    # Moving towards one image flips the decision exactly where the ratio crosses 1/3:
    # at x = a + s (b - a) the ratio is s / (1 - s), which is 1/3 at s = 1/4 (with only a and
    # b in the training set, so that no third image is the second nearest).
    a, b = train[1:2], train[5:6]
    steps = torch.tensor([0.2, 0.24, 0.26, 0.3, 0.76])
    points = torch.cat([a + s * (b - a) for s in steps])
    assert memorized(points, torch.cat([a, b])).tolist() == [True, True, False, False, True]


def test_fraction_mixes_and_duplicated_training_images(train: torch.Tensor) -> None:
    fresh = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(9)) * 2 - 1
    samples = torch.cat([train[:1], fresh])
    assert memorization_fraction(samples, train) == 0.25
    # A training set holding the same image twice: a copy of it is still a copy.
    doubled = torch.cat([train, train[:1]])
    assert memorization_fraction(train[:1], doubled) == 1.0
    assert memorization_fraction(train[:1], train, threshold=0.0) == 0.0


def test_chunking_and_shapes(train: torch.Tensor) -> None:
    samples = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    whole = nearest_two(samples, train)
    chunked = nearest_two(samples, train, chunk=2)
    assert torch.equal(whole.first, chunked.first) and torch.equal(whole.index, chunked.index)
    assert (whole.second >= whole.first).all()
    with pytest.raises(ValueError, match="two training images"):
        nearest_two(samples, train[:1])
    with pytest.raises(ValueError, match="differ"):
        nearest_two(samples[:, :, :4], train)
