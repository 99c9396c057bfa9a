"""Generated training speed after / before the component redesign, per committed spec.

For every trainable spec, the package `generated/<experiment>/` of this checkout and the one
committed at REVISION (before architectures, objectives and targets became components) are
imported side by side and the first run of each is trained in its smoke profile with
more steps, in alternation, REPEATS times each, in this one process with one thread. The
figure is the ratio of the median wall times of `train()` (after / before; 1.00 = no
change; the target is <= 1.02). Both read the same runtime, so the ratio measures the
generated code.

    .venv/bin/python benchmarks/redesign_step_time.py [REVISION]
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
REVISION = sys.argv[1] if len(sys.argv) > 1 else "dc7925b"
# The smoke profile, with more training steps so that training, not set-up, is timed.
SPECS = {
    "gated_attention": {"train.steps": 60},
    "gate_design_space": {"train.steps": 60},
    "gate_stability": {"train.steps": 60},
    "crl_depth": {"train.steps": 40},
    "diffusion_memorization": {"train.steps": 80},
    "rlvr_passk": {"train.pretrain_steps": 80},
}
REPEATS = 7


def package_at(revision: str, experiment: str, root: Path) -> Path:
    """Write generated/<experiment>/ as committed at `revision` under root; its folder."""
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{revision}:generated/{experiment}"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    folder = root / experiment
    folder.mkdir(parents=True)
    for name in listing:
        text = subprocess.run(
            ["git", "show", f"{revision}:generated/{experiment}/{name}"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (folder / name).write_text(text)
    return folder


def load(folder: Path, alias: str):
    spec = importlib.util.spec_from_file_location(
        alias, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{alias}.train")


def timed(train_module, out: Path, steps: dict[str, int]) -> float:
    from expc import runtime

    name = next(iter(train_module.RUNS))
    overrides = {**train_module.PROFILES["smoke"], **steps}
    run = runtime.apply_overrides(train_module.RUNS[name], overrides)
    started = time.perf_counter()
    train_module.train(run, out)
    return time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(1)
    print(f"generated code after / before the redesign ({REVISION}), smoke profile, 1 thread")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        for experiment, steps in SPECS.items():
            before = load(package_at(REVISION, experiment, tmp / "before"), f"before_{experiment}")
            after = load(ROOT / "generated" / experiment, f"after_{experiment}")
            times: dict[str, list[float]] = {"before": [], "after": []}
            for repeat in range(REPEATS + 1):  # the first pair warms caches and is dropped
                for label, module in (("before", before), ("after", after)):
                    seconds = timed(module, tmp / "runs" / label / experiment / str(repeat), steps)
                    if repeat:
                        times[label].append(seconds)
            b, a = statistics.median(times["before"]), statistics.median(times["after"])
            print(f"{experiment:<24} {a / b:.3f}  ({a:.2f} s vs {b:.2f} s)", flush=True)


if __name__ == "__main__":
    main()
