"""Sample quality without Inception: distances to held-out data in fixed random-conv features.

The paper measures quality with FID, the Frechet distance between Gaussians fitted to
Inception-v3 features of generated and held-out images. Inception's weights cannot be loaded
here, so we keep the Frechet distance and replace the feature map by a small convolutional
network with fixed random weights (He-normal, seeded independently of the training RNG):
three 3x3 conv + ReLU + 2x2 average-pool stages, the features being each stage's channel means
and standard deviations over space.

Why this and not something simpler:
- Pixel-space statistics are not enough: a Gaussian with the data's pixel mean and covariance
  (a blurry, texture-free cloud) matches them exactly, so a pixel-space Frechet distance calls it
  perfect. The ReLU features respond to edges, corners and blob shapes, which such a Gaussian
  lacks (the tests check that it scores far worse than real images).
- Random convolutional features are a known usable stand-in for trained ones when evaluating
  generative models (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics").
- Fixed weights, fixed seed: the number means the same in every run, for every n.

The Frechet distance is biased upwards at small sample counts; we always compare the same
number of samples against the same held-out set, and `QualityReference.floor` gives the value
two disjoint sets of real held-out images reach (the best a perfect model can expect). The
kernel distance (KID: unbiased MMD^2 with the cubic polynomial kernel of Binkowski et al. 2018)
has no such bias and is offered as a second view.
"""

from __future__ import annotations

import torch
from torch import nn


class RandomConvFeatures(nn.Module):
    """A fixed, randomly initialised conv net mapping (N, C, H, W) images to (N, D) features."""

    def __init__(self, channels: int, widths: tuple[int, ...] = (32, 64, 64), seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        layers = []
        inputs = channels
        for width in widths:
            conv = nn.Conv2d(inputs, width, kernel_size=3, padding=1)
            with torch.no_grad():
                fan_in = inputs * 9
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
            layers.append(conv)
            inputs = width
        self.convs = nn.ModuleList(layers)
        self.requires_grad_(False)
        # Feature blocks in output order: each layer's channel means, then its channel stds.
        self.blocks = tuple(w for w in widths for _ in range(2))
        self.dim = sum(self.blocks)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = []
        x = images.float()
        for index, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            features += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
            if index + 1 < len(self.convs) and min(x.shape[-2:]) >= 2:
                x = nn.functional.avg_pool2d(x, 2)
        return torch.cat(features, dim=1).double()


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0.0).sqrt()) @ vectors.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) between Gaussian fits of
    two (N, D) feature sets (the symmetric form of FID's matrix square root)."""
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0.0).sqrt().sum()
    value = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2.0 * cross
    return float(value.clamp(min=0.0))


def kernel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3 (KID); about 0 for equal distributions."""
    a, b = a.double(), b.double()
    m, n, dim = a.shape[0], b.shape[0], a.shape[1]
    if m < 2 or n < 2:
        raise ValueError("the kernel distance needs at least two samples per set")
    k_aa = (a @ a.T / dim + 1.0) ** 3
    k_bb = (b @ b.T / dim + 1.0) ** 3
    k_ab = (a @ b.T / dim + 1.0) ** 3
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
    return float(within_a + within_b - 2.0 * k_ab.mean())


class QualityReference:
    """Held-out features computed once; then distances of any sample set to them.

    Features are centred on the held-out mean and each block (one layer's channel means, or
    its channel stds) is divided by one number, that block's average per-feature std on the
    held-out images, so that every layer counts on a comparable scale. One scale per block
    and not per feature: a ReLU channel that is almost never active on held-out images would
    otherwise be divided by ~0 and dominate the distance whenever a sample activates it.
    """

    def __init__(self, held_out: torch.Tensor, *, seed: int = 0, batch_size: int = 512):
        self.features = RandomConvFeatures(held_out.shape[1], seed=seed)
        self.batch_size = batch_size
        raw = self._raw(held_out)
        block = torch.repeat_interleave(
            torch.arange(len(self.features.blocks)), torch.tensor(self.features.blocks)
        )
        std = raw.std(0)
        per_block = torch.stack([std[block == b].mean() for b in range(len(self.features.blocks))])
        self.shift = raw.mean(0)
        self.scale = per_block[block].clamp(min=1e-12)
        self.reference = (raw - self.shift) / self.scale

    def _raw(self, images: torch.Tensor) -> torch.Tensor:
        parts = [self.features(chunk.cpu()) for chunk in images.split(self.batch_size)]
        return torch.cat(parts)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Standardised features (N, D) of images in [-1, 1]."""
        return (self._raw(images) - self.shift) / self.scale

    def frechet(self, samples: torch.Tensor) -> float:
        return frechet_distance(self.embed(samples), self.reference)

    def kernel(self, samples: torch.Tensor) -> float:
        return kernel_distance(self.embed(samples), self.reference)

    def floor(self, other_real: torch.Tensor) -> float:
        """The Frechet distance real images disjoint from the reference reach (same count as
        the samples you will score): what a perfect model would get."""
        return self.frechet(other_real)
