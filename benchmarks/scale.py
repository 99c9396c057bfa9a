"""Running at scale on this machine, each figure measured in this one run:

1. sweep wall time with `--jobs 1` vs `--jobs 2` (4 independent runs);
2. DDP step time with 2 ranks vs 1 rank on CPU (gloo), same global batch, from the runs'
   own elapsed_s (torchrun start-up excluded);
3. checkpoint write time as a share of one training step of the main model.

    .venv/bin/python benchmarks/scale.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = """\
experiment {name} {{}}
data text {{ context = 128 }}
model transformer {{
  layers = 2
  width = 128
  heads = 4
}}
objective next_token {{}}
train {{ steps = {steps} batch_size = 16 eval_every = {steps} eval_batches = 2 }}
"""


def expc(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "expc", *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def sweep_ratio(tmp: Path) -> None:
    spec = tmp / "sweep.exp"
    spec.write_text(
        BASE.format(name="sweep_bench", steps=40) + "sweep s { experiment.seed = [1, 2, 3, 4] }\n"
    )
    common = [str(spec), "--out", str(tmp / "runs"), "--generated", str(tmp / "gen"), "--force"]
    expc("run", *common, "--set", "train.steps=1", "--set", "train.eval_every=1")  # warm caches
    one = expc("run", *common, "--jobs", "1")
    two = expc("run", *common, "--jobs", "2")
    print(f"sweep of 4 runs: --jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s, ratio {two / one:.2f}")


def ddp_ratio(tmp: Path) -> None:
    spec = tmp / "ddp.exp"
    spec.write_text(
        BASE.format(name="ddp_bench", steps=30) + "target cpu { strategy = ddp devices = 2 }\n"
    )
    per_step = {}
    for devices in (1, 2):
        out = tmp / f"ddp{devices}"
        expc("run", str(spec), "--out", str(out), "--generated", str(tmp / "gen"),
             "--set", f"target.devices={devices}", "--force")  # fmt: skip
        rows = [
            json.loads(x)
            for x in (out / "ddp_bench" / "main" / "metrics.jsonl").read_text().splitlines()
        ]
        per_step[devices] = rows[-1]["elapsed_s"] / rows[-1]["step"]
    print(
        f"DDP on CPU, global batch 16: 1 rank {per_step[1] * 1000:.0f} ms/step, "
        f"2 ranks {per_step[2] * 1000:.0f} ms/step, ratio {per_step[2] / per_step[1]:.2f}"
    )


def checkpoint_share(tmp: Path) -> None:
    from expc.runtime import save_checkpoint
    from generated.gated_attention import model as model_module
    from generated.gated_attention import train as train_module

    run = train_module.RUNS["gated"]
    model = model_module.Transformer(run.model)
    optimizer = train_module.make_optimizer(model, run.train)
    tokens = torch.randint(0, 256, (run.train.batch_size, run.data.context + 1))
    steps, saves = [], []
    for _ in range(5):
        started = time.perf_counter()
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append(time.perf_counter() - started)
        started = time.perf_counter()
        save_checkpoint(tmp / "ckpt.pt", model=model, optimizer=optimizer, step=1, losses=[])
        saves.append(time.perf_counter() - started)
    step, save = statistics.median(steps), statistics.median(saves)
    size = (tmp / "ckpt.pt").stat().st_size / 1e6
    print(
        f"checkpoint of the main model ({size:.1f} MB, fsynced): {save * 1000:.1f} ms = "
        f"{save / step:.1%} of one {step * 1000:.0f} ms training step "
        f"(written once per evaluation: every {run.train.eval_every} steps by default)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint_share(Path(tmp))
        sweep_ratio(Path(tmp))
        ddp_ratio(Path(tmp))


if __name__ == "__main__":
    main()
