"""Wall time of `expc compile specs/` as a whole process (what a user waits for).

Measures the command with a warm on-disk cache (the usual case) and with the cache off
(EXPC_NO_CACHE=1: Lark tables, template bytecode and ruff formatting all recomputed),
interleaved, and prints medians and their ratio. Run from the repository root:

    .venv/bin/python benchmarks/compile_time.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 9


def timed(env: dict[str, str], out: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "expc", "compile", "specs", "-o", out],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    specs = sorted((ROOT / "specs").rglob("*.exp"))
    warm_env = dict(os.environ)
    cold_env = {**os.environ, "EXPC_NO_CACHE": "1"}
    warm, cold = [], []
    with tempfile.TemporaryDirectory() as out:
        timed(warm_env, out)  # fill the cache once
        for _ in range(REPEATS):
            warm.append(timed(warm_env, out))
            cold.append(timed(cold_env, out))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import expc.cli"], check=True)
        imports = time.perf_counter() - started
    print(f"specs compiled per run: {len(specs)}")
    print(f"python + `import expc.cli`: {imports:.3f} s")
    print(f"expc compile specs/ (warm cache): median {statistics.median(warm):.3f} s")
    print(f"expc compile specs/ (no cache):   median {statistics.median(cold):.3f} s")
    print(f"ratio no-cache / warm: {statistics.median(cold) / statistics.median(warm):.2f}")
    print(f"warm vs the 0.5 s target: {statistics.median(warm) / 0.5:.2f}x")


if __name__ == "__main__":
    main()
