"""The memorization criterion of Bonnaire et al. (compute_fmem.py).

A generated sample x is memorized when its nearest training image a1 is much closer than the
second nearest a2:  ||x - a1|| / ||x - a2|| < k,  k = 1/3.  The distance is the Euclidean (L2)
distance between flattened pixel arrays, in whatever pixel scale the images are given (here the
[-1, 1] range the model is trained on; the ratio does not depend on the scale).

A sample half-way between two training images has a ratio near 1, a copy of one a ratio near 0:
the criterion separates copying from interpolating without a threshold on absolute distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GAP_THRESHOLD = 1.0 / 3.0


@dataclass(frozen=True)
class NearestTwo:
    """Per sample: the distances to the two nearest training images and the nearest's index."""

    first: torch.Tensor
    second: torch.Tensor
    index: torch.Tensor

    @property
    def ratio(self) -> torch.Tensor:
        """||x - a1|| / ||x - a2||, with 0 for an exact copy of a duplicated training image."""
        return torch.where(self.first == 0, 0.0, self.first / self.second)


def nearest_two(samples: torch.Tensor, train: torch.Tensor, *, chunk: int = 1024) -> NearestTwo:
    """L2 distances from each sample to its two nearest training images (pixels flattened)."""
    if train.shape[0] < 2:
        raise ValueError("the criterion needs at least two training images")
    if samples.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape)} and train {tuple(train.shape)} differ")
    flat_train = train.reshape(train.shape[0], -1).double()
    firsts, seconds, indices = [], [], []
    # Chunked so that (samples x n) distance matrices stay small for large n.
    for part in samples.reshape(samples.shape[0], -1).double().split(chunk):
        # cdist's matrix-multiplication path loses precision for near-copies; compute directly.
        distance = torch.cdist(part, flat_train, compute_mode="donot_use_mm_for_euclid_dist")
        values, index = distance.topk(2, dim=1, largest=False)
        firsts.append(values[:, 0])
        seconds.append(values[:, 1])
        indices.append(index[:, 0])
    return NearestTwo(torch.cat(firsts), torch.cat(seconds), torch.cat(indices))


def memorized(
    samples: torch.Tensor, train: torch.Tensor, *, threshold: float = GAP_THRESHOLD
) -> torch.Tensor:
    """Boolean per sample: is it a (near-)copy of one training image?"""
    return nearest_two(samples, train).ratio < threshold


def memorization_fraction(
    samples: torch.Tensor, train: torch.Tensor, *, threshold: float = GAP_THRESHOLD
) -> float:
    """f_mem: the share of samples that the criterion calls memorized."""
    return float(memorized(samples, train, threshold=threshold).double().mean())
