"""Targets across objectives, each ratio measured in this one run on this machine (CPU):

1. bf16 / fp32 training-step time, per objective: one spec with an fp32 and a bf16 variant
   (the precision may differ between variants), the same steps and seed;
2. DDP 2 ranks / 1 process training-step time, per objective, the same global batch: the
   1-process run is `strategy = single` with torch's default threads (2 here), the DDP run
   2 gloo ranks of one thread each, launched by `expc run` through torchrun.

A step's time is the run's own `elapsed_s` at its last metrics row over its steps (start-up
and compilation excluded; the one evaluation at the end is included, kept small).

    .venv/bin/python benchmarks/objectives.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One small spec per trainable objective; {target} becomes its target block.
SPECS = {
    "next_token": """\
experiment bench_next_token {{}}
data text {{ context = 128 }}
model transformer {{ layers = 2 width = 128 heads = 4 }}
objective next_token {{}}
train {{ steps = 30 batch_size = 16 eval_every = 30 eval_batches = 1 }}
{target}
""",
    "rlvr": """\
experiment bench_rlvr {{}}
data arithmetic {{}}
model transformer {{ layers = 2 width = 128 heads = 4 }}
objective rlvr {{}}
train {{
  pretrain {{ steps = 30 batch_size = 64 eval_every = 30 }}
  rl {{ steps = 0 }}
}}
eval {{ problems = 4 samples = 4 track_samples = 1 }}
metrics = [train_loss]
{target}
""",
    "crl": """\
experiment bench_crl {{}}
data maze {{ num_envs = 64 eval_envs = 4 episode_length = 20 }}
model residual_mlp {{ depth = 8 width = 256 }}
objective crl {{}}
train {{ steps = 30 batch_size = 256 prefill = 20 eval_every = 30 }}
metrics = [critic_loss]
{target}
""",
    "diffusion": """\
experiment bench_diffusion {{}}
data shapes {{ n = 64 size = 16 }}
model unet {{ width = 32 }}
objective diffusion {{}}
train {{ steps = 30 batch_size = 32 }}
eval {{ first_eval = 30 evaluations = 1 samples = 4 sampling_steps = 2 loss_images = 4 }}
metrics = [train_loss]
{target}
""",
}
PRECISION = "variant fp32 {}\nvariant bf16 { target.precision = bf16 }"


def train(spec: Path, out: Path) -> Path:
    """Train every run of the spec; its experiment folder."""
    command = [sys.executable, "-m", "expc", "run", str(spec), "--out", str(out)]
    command += ["--generated", str(spec.parent / "generated"), "--force"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return next(p for p in out.iterdir() if p.is_dir())


def step_time(experiment: Path, run: str) -> float:
    rows = [json.loads(x) for x in (experiment / run / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["elapsed_s"] / rows[-1]["step"]


def supports(objective: str, setting: str) -> bool:
    from expc.compiler import components

    support = components.for_objective(objective).target  # type: ignore[union-attr]
    return "bf16" in support.precision if setting == "bf16" else "ddp" in support.strategy


def main() -> None:
    print("objective    bf16/fp32 step      ddp 2 ranks / 1 process step")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        for objective, text in SPECS.items():
            cells = []
            if supports(objective, "bf16"):
                spec = tmp / f"{objective}_precision.exp"
                spec.write_text(text.format(target="target cpu {}") + PRECISION + "\n")
                experiment = train(spec, tmp / f"{objective}_precision")
                fp32, bf16 = step_time(experiment, "fp32"), step_time(experiment, "bf16")
                cells.append(f"{bf16 / fp32:.2f} ({bf16 * 1e3:.0f} vs {fp32 * 1e3:.0f} ms)")
            else:
                cells.append("not supported")
            if supports(objective, "ddp"):
                single = tmp / f"{objective}_single.exp"
                single.write_text(text.format(target="target cpu {}"))
                ddp = tmp / f"{objective}_ddp.exp"
                ddp.write_text(text.format(target="target cpu { strategy = ddp devices = 2 }"))
                one = step_time(train(single, tmp / f"{objective}_one"), "main")
                two = step_time(train(ddp, tmp / f"{objective}_two"), "main")
                cells.append(f"{two / one:.2f} ({two * 1e3:.0f} vs {one * 1e3:.0f} ms)")
            else:
                cells.append("not supported")
            print(f"{objective:<12} {cells[0]:<19} {cells[1]}", flush=True)


if __name__ == "__main__":
    main()
