"""Keep the Hugging Face libraries off the network.

Every model expc loads through transformers or sentence-transformers is a local file (a
package's folder, a GGUF file): nothing is ever downloaded. Set before those libraries are
imported, since they read these variables once.
"""

from __future__ import annotations

import os


def hub_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
