"""Compile time for a 1,000-line spec: the base model plus 331 three-line variants.

Prints the in-process time of each stage and the whole `expc compile` process, with the
cache off (the honest cost) and warm. Run from the repository root:

    .venv/bin/python benchmarks/large_spec.py
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
BASE = """\
experiment large {}
data text { context = 64 }
model transformer {
  layers = 2
  width = 64
  heads = 4
}
objective next_token {}
train { steps = 100 }
"""


def spec_text(variants: int = 331) -> str:
    body = "".join(f"variant v{i} {{\n  model.layers = {1 + i % 4}\n}}\n" for i in range(variants))
    return BASE + body


def main() -> None:
    os.environ["EXPC_NO_CACHE"] = "1"
    from expc.compiler.lower import lower
    from expc.compiler.parse import parse
    from expc.compiler.pyformat import ruff_format
    from expc.compiler.render import render
    from expc.compiler.source import SourceFile
    from expc.compiler.validate import validate

    text = spec_text()
    source = SourceFile("large.exp", text)
    stages: dict[str, list[float]] = {"parse": [], "lower": [], "render": [], "ruff": []}
    for _ in range(5):
        t0 = time.perf_counter()
        tree = parse(source)
        t1 = time.perf_counter()
        spec = lower(tree)
        validate(spec)
        t2 = time.perf_counter()
        files = render(spec)
        t3 = time.perf_counter()
        ruff_format(files)
        t4 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(value)
    print(f"spec: {text.count(chr(10))} lines, {len(spec.runs)} runs")
    for name, values in stages.items():
        print(f"  {name:7s} median {statistics.median(values) * 1000:7.1f} ms")
    total = sum(statistics.median(v) for v in stages.values())
    print(f"  in-process total {total * 1000:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "large.exp")
        path.write_text(text)
        for label, env in (
            ("no cache", {**os.environ, "EXPC_NO_CACHE": "1"}),
            ("warm cache", {k: v for k, v in os.environ.items() if k != "EXPC_NO_CACHE"}),
        ):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "expc",
                        "compile",
                        str(path),
                        "-o",
                        str(Path(tmp, "out")),
                    ],
                    cwd=tmp,
                    env=env,
                    check=True,
                    capture_output=True,
                )
                times.append(time.perf_counter() - started)
            print(
                f"`expc compile large.exp` whole process, {label}: {statistics.median(times):.3f} s"
            )


if __name__ == "__main__":
    main()
