"""Throughput of a K-member vectorized ensemble against the same K runs trained one after
another, in one process on this machine, interleaved, medians of REPEATS.

Each spec extends a committed one: its runs crossed with seeds, trained for STEPS steps
with one cheap evaluation at the end, at the spec's `threads = 1`, so the figure is the
training step's (collection included for CRL): evaluations are not vectorized and cost
what they cost in a standalone run. The members match the standalone runs
(tests/test_ensembles.py); this measures only time. Memory per member: the stacked
parameters, gradients and buffers of one member.

Also timed: the forward and backward pass alone of the CRL critic (depth 4, width 64,
batch 256, K = 8) and of the language model (4 layers x 128, batch 8, K = 3),
`torch.func.vmap` over stacked parameters against a loop over the K networks. Run from
the repository root:

    .venv/bin/python benchmarks/ensembles.py [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from expc.compiler.pipeline import compile_path  # noqa: E402
from expc.runtime.ensemble import Ensemble  # noqa: E402

# name: (committed spec, its changes); K = 8 members each, trained STEPS steps, metrics
# that need no evaluation beyond the last step's.
SPECS = {
    "diffusion U-Net (width 16)": (  # 4 sample counts x 2 seeds
        "specs/diffusion_memorization.exp",
        "experiment {{ seeds = 2 }}\ntrain {{ steps = {steps} }}\n"
        "eval {{ first_eval = {steps} evaluations = 1 }}\nmetrics = [train_loss]\n",
    ),
    "diffusion DiT (2 x 64, ungated)": (  # 4 sample counts x 2 seeds
        "specs/diffusion_dit_memorization.exp",
        "experiment {{ seeds = 2 }}\nremove variant.gated\ntrain {{ steps = {steps} }}\n"
        "eval {{ first_eval = {steps} evaluations = 1 }}\nmetrics = [train_loss]\n",
    ),
    "CRL (depth 4, width 64, batch 256)": (  # 2 mazes x 4 seeds, the depth-4 runs only
        "specs/crl_depth.exp",
        "experiment {{ seeds = 4 }}\nremove sweep.depth\n"
        "train {{ steps = {steps} eval_every = {steps} }}\n"
        "metrics = [critic_loss, categorical_accuracy]\n",
    ),
    "LM (4 layers x 128, batch 32 x 128, gated)": (  # 3 seeds of the gated variant
        "specs/gated_attention.exp",
        "experiment {{ seeds = 3 }}\nremove variant.vanilla\nremove eval.attention_maps\n"
        "train {{ steps = {steps} eval_every = {steps} eval_batches = 1 }}\n"
        "eval {{ context_multiples = [1] }}\nmetrics = [train_loss, val_loss]\n",
    ),
}
REPEATS = 3


def spec_text(base: str, changes: str, steps: int) -> str:
    return (
        f'extends "{ROOT / base}"\n'
        "target cpu { ensemble = auto threads = 1 }\n" + changes.format(steps=steps)
    )


def package(base: str, changes: str, steps: int, folder: Path) -> object:
    name = Path(base).stem
    spec = folder / f"{name}.exp"
    spec.write_text(spec_text(base, changes, steps))
    for file, text in compile_path(spec).files.items():
        (folder / "generated" / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / "generated" / file).write_text(text)
    sys.path.insert(0, str(folder / "generated"))
    return importlib.import_module(f"{name}.train")


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def whole_runs(steps: int, repeats: int) -> None:
    for label, (base, changes) in SPECS.items():
        with tempfile.TemporaryDirectory() as tmp:
            train = package(base, changes, steps, Path(tmp))
            runs = list(train.RUNS.values())
            out = Path(tmp) / "runs"
            alone, together = [], []
            for repeat in range(repeats):
                started = time.perf_counter()
                for run in runs:
                    train.train(run, out / f"{repeat}" / run.name)
                alone.append(time.perf_counter() - started)
                started = time.perf_counter()
                train.train_ensemble(runs, [out / f"e{repeat}" / r.name for r in runs])
                together.append(time.perf_counter() - started)
            members = [
                train.build_member(r, out / "m", None, False, torch.device("cpu")) for r in runs
            ]
            networks = [m.agent if hasattr(m, "agent") else m.model for m in members]
            per_member = Ensemble(networks).bytes_per_member()
            a, b = statistics.median(alone), statistics.median(together)
            print(
                f"{label}, K = {len(runs)}, {steps} steps: {len(runs)} runs one after another "
                f"{a:.2f} s, one ensemble {b:.2f} s: {a / b:.2f}x "
                f"({per_member / 1024:.0f} KiB of parameters, gradients and buffers per member)"
            )


def step_only(label: str, nets: list[torch.nn.Module], inputs: list, loss: Callable) -> None:
    """Forward and backward of K networks: a loop over them against one vmapped pass."""
    ensemble = Ensemble([copy.deepcopy(n) for n in nets])
    stacked = [torch.stack(parts) for parts in zip(*inputs, strict=True)]

    def loop() -> None:
        for net, args in zip(nets, inputs, strict=True):
            loss(net, *args).backward()

    def vectorized() -> None:
        ensemble.backward(ensemble.losses(loss, *stacked), range(len(nets)))

    loop(), vectorized()  # warm up
    a = statistics.median(timed(loop) for _ in range(10))
    b = statistics.median(timed(vectorized) for _ in range(10))
    print(
        f"{label}, K = {len(nets)}, forward + backward only: loop {a * 1e3:.1f} ms, "
        f"vmap {b * 1e3:.1f} ms: {a / b:.2f}x"
    )


def crl_critic() -> None:
    from expc.runtime import crl
    from generated.crl_depth.model import Agent, ModelConfig

    nets, inputs = [], []
    for seed in range(8):
        torch.manual_seed(seed)
        nets.append(Agent(4, 2, 2, ModelConfig(depth=4, width=64)).critic)
        inputs.append((torch.randn(256, 4), torch.randn(256, 2), torch.randn(256, 2)))

    def loss(critic: Callable, obs: torch.Tensor, action: torch.Tensor, goal: torch.Tensor):
        phi, psi = critic(obs, action, goal)
        return crl.critic_loss(crl.energy(phi, psi), 0.1)[0]

    step_only("CRL critic (depth 4, width 64, batch 256)", nets, inputs, loss)


def language_model() -> None:
    from generated.gated_attention.model import ModelConfig, Transformer

    nets, inputs = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(Transformer(ModelConfig(layers=4, width=128, heads=4)))
        tokens = torch.randint(0, 256, (8, 129))
        inputs.append((tokens[:, :-1], tokens[:, 1:]))

    def loss(model: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model(x, y)[1]

    step_only("LM (4 layers x 128, batch 8 x 128)", nets, inputs, loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    whole_runs(args.steps, args.repeats)
    crl_critic()
    language_model()


if __name__ == "__main__":
    main()
