"""Image data for the diffusion experiments: a procedural family generated offline, or local files.

Every loader returns float32 tensors of shape (N, C, H, W) with values in [-1, 1], the range the
DDPM forward process assumes (x_T ~ N(0, I) is then on the scale of the data).

The procedural family ("shapes") draws each image from its own random generator seeded by
(seed, split, index). So the first n training images are the same for every n (the training set
for n = 64 is a prefix of the one for n = 128, as the paper takes nested CelebA subsets), any n
can be asked for, and the held-out images come from a different stream, disjoint by construction.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from expc.runtime.errors import RunError
from expc.safe_read import read_bounded

_TRAIN_STREAM = 0
_HELD_OUT_STREAM = 1
SHAPE_KINDS = ("disc", "square", "bar")
PNG_SUFFIXES = (".png",)
# Bounds on what one image file or .npy array may hold (a pipe or /dev/zero, refused).
MAX_IMAGE_FILE_BYTES = 64 << 20
MAX_NPY_BYTES = 8 << 30


@dataclass(frozen=True)
class ImageSplits:
    """A training set of n images and a disjoint held-out set, both (N, C, H, W) in [-1, 1]."""

    train: torch.Tensor
    held_out: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train.shape[1:]
        return int(c), int(h), int(w)


# --------------------------------------------------------------------------- procedural shapes


def _draw_parameters(rng: np.random.Generator, shapes: int, channels: int) -> dict[str, np.ndarray]:
    """The ~5 continuous numbers per shape plus a background gradient (13 for two shapes), so
    that two independent images are essentially never near-duplicates of each other: the
    memorization criterion then measures copying, not chance."""
    return {
        "background": rng.uniform(0.0, 0.3, size=channels),
        "gradient": rng.uniform(0.0, 0.15),
        "gradient_angle": rng.uniform(0.0, 2 * np.pi),
        "kind": rng.integers(0, len(SHAPE_KINDS), size=shapes),
        "center": rng.uniform(0.2, 0.8, size=(shapes, 2)),
        "radius": rng.uniform(0.12, 0.28, size=shapes),
        "angle": rng.uniform(0.0, np.pi, size=shapes),
        "color": rng.uniform(0.55, 1.0, size=(shapes, channels)),
    }


def _signed_distance(
    kind: str, px: np.ndarray, py: np.ndarray, radius: float, angle: float
) -> np.ndarray:
    """Signed distance (image units, negative inside) from pixel centres to a centred shape."""
    if kind == "disc":
        return np.hypot(px, py) - radius
    # Rotate into the shape's frame, then the distance to an axis-aligned box (Quilez's formula).
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * px + sin * py, -sin * px + cos * py
    half = (radius, radius) if kind == "square" else (1.5 * radius, 0.35 * radius)
    qx, qy = np.abs(u) - half[0], np.abs(v) - half[1]
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return outside + inside


def render_shapes(params: dict[str, np.ndarray], size: int) -> np.ndarray:
    """One image (C, size, size) in [0, 1]: a shaded background, shapes painted over it in order,
    anti-aliased with a one-pixel linear ramp so that positions and sizes act continuously."""
    centres = (np.arange(size) + 0.5) / size
    py, px = np.meshgrid(centres, centres, indexing="ij")
    angle = params["gradient_angle"]
    direction = np.cos(angle) * (px - 0.5) + np.sin(angle) * (py - 0.5)
    ramp = params["gradient"] * direction
    image = np.clip(params["background"][:, None, None] + ramp[None], 0.0, 1.0)
    for k in range(len(params["kind"])):
        kind = SHAPE_KINDS[int(params["kind"][k])]
        cx, cy = params["center"][k]
        distance = _signed_distance(
            kind, px - cx, py - cy, float(params["radius"][k]), float(params["angle"][k])
        )
        alpha = np.clip(0.5 - distance * size, 0.0, 1.0)[None]
        image = image * (1.0 - alpha) + params["color"][k][:, None, None] * alpha
    return image


def procedural_shapes(
    count: int,
    *,
    seed: int,
    held_out: bool = False,
    size: int = 16,
    channels: int = 1,
    shapes: int = 2,
) -> torch.Tensor:
    """`count` images of the shapes family, (count, channels, size, size) in [-1, 1].

    Image i depends only on (seed, stream, i): asking for more images extends the set.
    """
    if count < 0:
        raise RunError(f"image count must be >= 0, got {count}")
    if channels not in (1, 3):
        raise RunError(f"channels must be 1 or 3, got {channels}")
    if size < 4:
        raise RunError(f"image size must be >= 4 pixels, got {size}")
    stream = _HELD_OUT_STREAM if held_out else _TRAIN_STREAM
    images = np.empty((count, channels, size, size), dtype=np.float32)
    for index in range(count):
        rng = np.random.default_rng([seed, stream, index])
        images[index] = render_shapes(_draw_parameters(rng, shapes, channels), size)
    return torch.from_numpy(images * 2.0 - 1.0)


def shapes_splits(
    n: int, n_held_out: int, *, seed: int, size: int = 16, channels: int = 1, shapes: int = 2
) -> ImageSplits:
    """The first n training images and n_held_out held-out images of the shapes family."""
    if n < 1 or n_held_out < 1:
        raise RunError(f"need n >= 1 and n_held_out >= 1, got n={n}, n_held_out={n_held_out}")
    kwargs = {"seed": seed, "size": size, "channels": channels, "shapes": shapes}
    return ImageSplits(
        train=procedural_shapes(n, **kwargs),
        held_out=procedural_shapes(n_held_out, held_out=True, **kwargs),
    )


# --------------------------------------------------------------------------- local files


def to_unit_range(
    array: np.ndarray, value_range: tuple[float, float] | None = None
) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) pixels to float32 (N, C, H, W) in [-1, 1].

    Without `value_range`, uint8 arrays are read as [0, 255], float arrays inside [0, 1] as
    [0, 1], and float arrays inside [-1, 1] as already normalised; anything else must say its
    range, because guessing it would silently rescale the data.
    """
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise RunError(
            f"images must be shaped (N, H, W) or (N, H, W, C) with C in (1, 3), "
            f"got {tuple(array.shape)}"
        )
    if value_range is None:
        if array.dtype == np.uint8:
            value_range = (0.0, 255.0)
        elif np.issubdtype(array.dtype, np.floating) and array.size:
            low, high = float(array.min()), float(array.max())
            if low >= 0.0 and high <= 1.0:
                value_range = (0.0, 1.0)
            elif low >= -1.0 and high <= 1.0:
                value_range = (-1.0, 1.0)
            else:
                raise RunError(
                    f"float images span [{low:g}, {high:g}]; pass value_range=(low, high)"
                )
        else:
            raise RunError(f"cannot infer the value range of {array.dtype} images")
    low, high = value_range
    if not high > low:
        raise RunError(f"value_range must have high > low, got {value_range}")
    scaled = (array.astype(np.float32) - low) / (high - low) * 2.0 - 1.0
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))


def _center_square(image):  # PIL.Image.Image in and out
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _read_image_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, bounded: a pipe or /dev/zero behind an image's name is an
    error, not a hang."""
    try:
        return read_bounded(path, limit, what="image file")
    except OSError as error:
        raise RunError(f"cannot read {str(path)!r}: {error}") from None


def load_png_folder(path: Path, *, channels: int = 1, size: int | None = None) -> torch.Tensor:
    """Every PNG in a folder (sorted by name) as (N, C, H, W) in [-1, 1].

    With `size`, each image is centre-cropped to a square and resized (as the paper's CelebA
    transform does); without it all images must already have one shape.
    """
    from PIL import Image

    files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in PNG_SUFFIXES)
    if not files:
        raise RunError(f"no .png files in {str(path)!r}")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise RunError(f"channels must be 1 or 3, got {channels}")
    arrays = []
    for file in files:
        with Image.open(io.BytesIO(_read_image_file(file, MAX_IMAGE_FILE_BYTES))) as image:
            image = image.convert(mode)
            if size is not None:
                resample = Image.Resampling.BILINEAR
                image = _center_square(image).resize((size, size), resample)
            arrays.append(np.asarray(image, dtype=np.uint8))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise RunError(f"images in {str(path)!r} differ in size {sorted(shapes)}; set a size")
    return to_unit_range(np.stack(arrays))


def load_images(
    path: str | Path,
    *,
    channels: int = 1,
    size: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """A .npy array (N, H, W[, C]) or a folder of PNGs, as (N, C, H, W) in [-1, 1]."""
    path = Path(path)
    if path.is_dir():
        return load_png_folder(path, channels=channels, size=size)
    if path.suffix == ".npy" and path.is_file():
        array = np.load(io.BytesIO(_read_image_file(path, MAX_NPY_BYTES)), allow_pickle=False)
        images = to_unit_range(array, value_range)
        if images.shape[1] != channels:
            raise RunError(
                f"{str(path)!r} has {images.shape[1]} channels, the spec asks {channels}"
            )
        if size is not None and images.shape[-2:] != (size, size):
            raise RunError(f"{str(path)!r} holds {tuple(images.shape[-2:])} images, not {size}")
        return images
    raise RunError(
        f"image data {str(path)!r} not found: give a folder of .png files or a .npy array "
        f"(relative paths are resolved from {Path.cwd()})"
    )


def split_images(images: torch.Tensor, n: int, n_held_out: int, *, seed: int) -> ImageSplits:
    """Shuffle loaded images once (by seed), hold out the last n_held_out, train on the first n.

    The held-out part does not depend on n, and the training sets are nested in n.
    """
    total = images.shape[0]
    if n < 1 or n_held_out < 1 or n + n_held_out > total:
        raise RunError(
            f"need n + n_held_out <= {total} images (and both >= 1), got n={n}, "
            f"n_held_out={n_held_out}"
        )
    order = torch.from_numpy(np.random.default_rng(seed).permutation(total))
    return ImageSplits(train=images[order[:n]], held_out=images[order[total - n_held_out :]])
