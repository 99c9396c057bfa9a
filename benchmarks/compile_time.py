"""Wall time of `expc compile specs/` as a whole process (what a user waits for).

Two cases, each after one untimed run, timed alternately:

- warm: the on-disk compile cache is full (the usual case: whole compile results are
  reused and neither pydantic, Lark nor Jinja is imported);
- cold: the cache is off (EXPC_NO_CACHE=1): every spec is parsed, lowered, rendered from
  templates compiled in this process, and formatted by ruff. The parser tables shipped in
  expc/compiler/parse_tables.py are part of the package and are used.

`--baseline DIR` times another checkout (e.g. `git worktree add /tmp/base HEAD~3`) in the
same alternation, on its own specs and templates, and prints the ratios. Run from the
repository root:

    .venv/bin/python benchmarks/compile_time.py [--repeats 9] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(checkout: Path, env: dict[str, str], out: str) -> float:
    """One `python -m expc compile specs -o OUT` of `checkout`'s code, in seconds."""
    env = {**env, "PYTHONPATH": str(checkout)}  # this checkout's expc, not the installed one
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "expc", "compile", "specs", "-o", out],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    checkouts = {"this": ROOT}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    base_env = {k: v for k, v in os.environ.items() if k != "EXPC_NO_CACHE"}
    modes = {"warm": base_env, "cold": {**base_env, "EXPC_NO_CACHE": "1"}}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {name: f"{tmp}/{name}" for name in checkouts}
        for name, checkout in checkouts.items():  # untimed: fill the cache, warm the disk
            for env in modes.values():
                timed(checkout, env, outs[name])
        for _ in range(args.repeats):
            for mode, env in modes.items():
                for name, checkout in checkouts.items():
                    times.setdefault((name, mode), []).append(timed(checkout, env, outs[name]))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import expc.cli"], check=True, cwd=ROOT)
        imports = time.perf_counter() - started
    specs = sorted((ROOT / "specs").rglob("*.exp"))
    print(f"expc compile specs/ ({len(specs)} specs), whole process, {args.repeats} runs each")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"python + `import expc.cli`: {imports:.3f} s")
    for (name, mode), values in times.items():
        label = f"{name} {mode}" if len(checkouts) > 1 else mode
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"{label:>13}: median {statistics.median(values):.3f} s (range {spread} s)")
    if len(checkouts) > 1:
        for mode in modes:
            pairs = zip(times[("this", mode)], times[("baseline", mode)], strict=True)
            ratio = statistics.median(a / b for a, b in pairs)
            print(f"{mode} this / baseline: {ratio:.2f} (median of the paired ratios)")
    warm = statistics.median(times[("this", "warm")])
    cold = statistics.median(times[("this", "cold")])
    print(f"cold / warm: {cold / warm:.2f}; cold vs the 0.4 s target: {cold / 0.4:.2f}x")


if __name__ == "__main__":
    main()
