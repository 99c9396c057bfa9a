"""The training loop every objective's generated train.py runs: `fit` for one run,
`fit_ensemble` for runs trained as one vectorized ensemble. An objective fills the hooks
of a `Training`; its stages say how many steps, when to evaluate and the lr schedule."""

from expc.runtime.loop.fit import RunLoop, fit, fit_ensemble
from expc.runtime.loop.running import Running
from expc.runtime.loop.stages import Constant, Stage, WarmupCosine
from expc.runtime.loop.training import Precision, Stats, Training

__all__ = [
    "Constant",
    "Precision",
    "RunLoop",
    "Running",
    "Stage",
    "Stats",
    "Training",
    "WarmupCosine",
    "fit",
    "fit_ensemble",
]
