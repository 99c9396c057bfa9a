"""Every committed spec's smoke-run metrics, recorded as golden files.

A refactor of the compiler, the templates or the runtime must not move a number: each spec
in `specs/` is run with `--smoke` on the CPU with one thread, and its `metrics.jsonl` rows,
minus the wall-clock figures, must equal `tests/golden/smoke_metrics/<experiment>/<run>.jsonl`
exactly. To record them anew (only when a change is meant to move numbers, and say why in
the commit):

    python tests/smoke_goldens.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "smoke_metrics"
# hivemind and hivemind_pretrained sample the gated_attention smoke runs: `expc run` trains
# them first where they are missing (or, after gated_attention here, finds them up to date).
SPECS = (
    "gated_attention",
    "gate_design_space",
    "gate_stability",
    "gated_attention_cuda",
    "crl_depth",
    "diffusion_memorization",
    "rlvr_passk",
    "diffusion_dit_memorization",
    "hivemind",
    "hivemind_pretrained",
)
# Keys measured by the clock, not by the computation.
TIMING = ("elapsed_s", "cpu_s")


def _timeless(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING and not k.endswith("_per_s")}


def smoke_folder(spec: str, out: Path) -> Path:
    """Where `expc run specs/<spec>.exp --smoke --out runs` in `out` writes its runs (each
    spec's experiment is named as its file): `out/runs/<experiment>@smoke`."""
    return out / "runs" / f"{spec}@smoke"


def run_smoke(spec: str, out: Path) -> dict[str, list[dict]]:
    """Run one spec's smoke profile in `out` (its runs in `out/runs/<spec>@smoke`); its rows
    by run name, timing removed. `out` gets copies of the repository's specs/ and
    generated/, so hivemind's `run("gated_attention", ...)` runs are the smoke runs trained
    there (`out/runs/gated_attention@smoke`) and the repository's own files are never
    rewritten."""
    for name in ("specs", "generated"):
        if not (out / name).exists():
            shutil.copytree(ROOT / name, out / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "expc", "run", f"specs/{spec}.exp", "--smoke"]
    command += ["--out", "runs", "--device", "cpu"]
    result = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{spec} smoke run failed:\n{result.stdout}\n{result.stderr}")
    return rows_of(smoke_folder(spec, out))


def rows_of(experiment_dir: Path) -> dict[str, list[dict]]:
    """The metrics rows of each run in an experiment folder, timing removed."""
    rows: dict[str, list[dict]] = {}
    for metrics in sorted(experiment_dir.glob("*/metrics.jsonl")):
        lines = metrics.read_text().splitlines()
        rows[metrics.parent.name] = [_timeless(json.loads(line)) for line in lines]
    return rows


def golden(spec: str) -> dict[str, list[dict]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted((GOLDEN / spec).glob("*.jsonl"))
    }


def record(out: Path) -> None:
    for spec in SPECS:
        folder = GOLDEN / spec
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.jsonl"):
            stale.unlink()
        for run, rows in run_smoke(spec, out).items():
            text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
            (folder / f"{run}.jsonl").write_text(text)
        print(f"recorded {spec}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        record(Path(scratch))
