"""One run of a generated package, described by a JSON config: what `expc run` hands to
torchrun for `strategy = ddp` (every rank runs this).

    python -m expc.runtime.entry PACKAGE_DIR LAUNCH_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from expc.runtime.distributed import exit_process
from expc.runtime.errors import RunError
from expc.runtime.loader import load_train_module, run_from_dict
from expc.runtime.seeding import resolve_threads


def main(argv: list[str] | None = None) -> int:
    package_dir, launch_file = (argv if argv is not None else sys.argv[1:])[:2]
    launch = json.loads(Path(launch_file).read_text())
    module = load_train_module(Path(package_dir))
    run = resolve_threads(run_from_dict(module, launch["run"]))  # threads per rank
    try:
        module.train(
            run, Path(launch["out_dir"]), None, device=launch["device"], resume=launch["resume"]
        )
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_process(main())
