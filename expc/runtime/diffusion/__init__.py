"""Runtime pieces of the diffusion memorization experiment (Bonnaire et al.): image data, noise
schedules, samplers, the memorization criterion, an offline quality distance, timescales.

Generated diffusion code imports these; the model and the training loop stay in the
generated files.
"""

from expc.runtime.diffusion.data import (
    ImageSplits,
    load_images,
    procedural_shapes,
    shapes_splits,
    split_images,
)
from expc.runtime.diffusion.grids import save_image_grid
from expc.runtime.diffusion.memorization import (
    GAP_THRESHOLD,
    memorization_fraction,
    nearest_two,
)
from expc.runtime.diffusion.quality import QualityReference
from expc.runtime.diffusion.sampling import sample
from expc.runtime.diffusion.schedule import (
    NoiseSchedule,
    denoising_loss,
    make_schedule,
    noise_prediction_loss,
    noising,
)
from expc.runtime.diffusion.timescales import log_spaced_steps, tau_gen, tau_mem

__all__ = [
    "GAP_THRESHOLD",
    "ImageSplits",
    "NoiseSchedule",
    "QualityReference",
    "denoising_loss",
    "load_images",
    "log_spaced_steps",
    "make_schedule",
    "memorization_fraction",
    "nearest_two",
    "noise_prediction_loss",
    "noising",
    "procedural_shapes",
    "sample",
    "save_image_grid",
    "shapes_splits",
    "split_images",
    "tau_gen",
    "tau_mem",
]
