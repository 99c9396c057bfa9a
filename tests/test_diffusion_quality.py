"""The offline sample-quality distance (Frechet / kernel distance in random-conv features)."""

from __future__ import annotations

import pytest
import torch
from diffusion_fixtures import one_thread  # noqa: F401

from expc.runtime.diffusion.data import procedural_shapes
from expc.runtime.diffusion.quality import (
    QualityReference,
    RandomConvFeatures,
    frechet_distance,
    kernel_distance,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_frechet_distance_of_gaussians_has_the_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2.0 + torch.tensor([1.0, 0, 0])
    # N(0, I) vs N(m, 4I): ||m||^2 + 3 * (1 + 4 - 2 * 2) = 1 + 3 = 4.
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_is_unbiased_near_zero_and_positive_for_a_shift() -> None:
    g = torch.Generator().manual_seed(1)
    same = [
        kernel_distance(torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g))
        for _ in range(20)
    ]
    assert abs(sum(same) / len(same)) < 0.02
    shifted = kernel_distance(
        torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g) + 1.0
    )
    assert shifted > 0.5


def test_features_are_fixed_by_their_seed() -> None:
    images = procedural_shapes(4, seed=0)
    torch.manual_seed(123)  # the global RNG must not matter
    a = RandomConvFeatures(1, seed=7)(images)
    torch.manual_seed(456)
    b = RandomConvFeatures(1, seed=7)(images)
    assert a.shape == (4, 2 * (32 + 64 + 64))
    assert torch.equal(a, b)
    assert not torch.equal(a, RandomConvFeatures(1, seed=8)(images))


@pytest.fixture(scope="module")
def reference() -> QualityReference:
    return QualityReference(procedural_shapes(512, seed=0, held_out=True))


def test_real_images_score_far_better_than_look_alikes(reference: QualityReference) -> None:
    real = procedural_shapes(256, seed=0)  # the training stream: disjoint from the reference
    floor = reference.floor(real)
    # A Gaussian with the real images' pixel mean and covariance: blurry, no shapes.
    flat = real.flatten(1).double()
    mean, cov = flat.mean(0), torch.cov(flat.T) + 1e-4 * torch.eye(flat.shape[1])
    g = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(cov)
    fake = mean + torch.randn(256, flat.shape[1], generator=g, dtype=torch.float64) @ chol.T
    fake = fake.float().clamp(-1, 1).view_as(real)
    blurred = torch.nn.functional.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.rand(real.shape, generator=g) * 2 - 1
    scores = {
        "real": floor,
        "blurred": reference.frechet(blurred),
        "pixel_gaussian": reference.frechet(fake),
        "noise": reference.frechet(noise),
    }
    # Measured: real 7.5, blurred 82, pixel-matched Gaussian 124, uniform noise 1409.
    assert scores["real"] * 5 < scores["blurred"] < scores["pixel_gaussian"] < scores["noise"]
    assert reference.kernel(real) < 0.1 * reference.kernel(fake)
    # Copies of a few real images are real-looking but not diverse: also clearly worse (217).
    assert reference.frechet(real[:8].repeat(32, 1, 1, 1)) > 10 * floor


def test_small_images_and_rarely_active_features_stay_stable() -> None:
    # 8x8 images leave some random ReLU channels nearly always off on real images; the
    # distance must not blow up when a sample happens to switch one on.
    held = procedural_shapes(256, seed=0, held_out=True, size=8)
    reference = QualityReference(held)
    real = reference.frechet(procedural_shapes(256, seed=0, size=8))
    noise = reference.frechet(
        torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    assert real < 30 and noise > 10 * real  # measured: 12.7 and ~800
