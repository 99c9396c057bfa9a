"""`data text { bos = true }`: every window starts with the beginning-of-sequence token, so
position 0 is the same token everywhere (the condition under which attention sinks form)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import MINIMAL, compile_text, import_generated, run_cli

from expc.runtime import read_metrics

BOS_SPEC = MINIMAL.replace("data text { context = 16 }", "data text { context = 16 bos = true }")


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory):
    plain = import_generated(compile_text(MINIMAL).files, tmp_path_factory.mktemp("plain"))
    bos = import_generated(compile_text(BOS_SPEC).files, tmp_path_factory.mktemp("bos"))
    return plain, bos


def test_windows_start_with_bos_and_predict_the_same_bytes(modules) -> None:
    (plain_model, plain_train), (bos_model, bos_train) = modules
    tokens = torch.arange(100) % 256
    x, y = bos_train.get_batch(tokens, 4, 16, torch.Generator().manual_seed(0))
    px, py = plain_train.get_batch(tokens, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16)
    assert bool((x[:, 0] == 256).all()) and bool((x[:, 1:] == y[:, :-1]).all())
    # The same crops as without BOS: the targets are the first 16 bytes of each window.
    assert torch.equal(y, px[:, :16]) and torch.equal(y[:, 1:], py[:, :-1])
    assert bos_model.ModelConfig().vocab_size == 257 and plain_model.ModelConfig().vocab_size == 256
    model = bos_model.Transformer(bos_model.ModelConfig(width=16, heads=2, layers=1))
    logits, loss = model(x, y)
    assert logits.shape == (4, 16, 257) and math.isfinite(loss.item())


def test_a_bos_run_trains_and_measures_attention_to_the_bos_token(tmp_path: Path) -> None:
    spec = tmp_path / "bos.exp"
    spec.write_text(
        BOS_SPEC.replace("experiment tiny", "experiment tiny_bos")
        + "metrics = [train_loss, val_loss, first_token_attention]\n"
    )
    out = tmp_path / "runs"
    result = run_cli("run", str(spec), "--out", str(out), "-o", str(tmp_path / "gen"))
    assert result.exit_code == 0, result.output
    rows = [r for r in read_metrics(out / "tiny_bos/main") if "val_loss" in r]
    assert rows and all(0.0 <= r["first_token_attention"] <= 1.0 for r in rows)
    state = torch.load(out / "tiny_bos/main/checkpoint.pt", weights_only=False)
    assert state["model"]["embed.weight"].shape[0] == 257
    # Sampled as a hivemind generator (or by `expc serve`): BOS first, bytes only out.
    from expc.runtime.hivemind.lm import LanguageModel

    lm = LanguageModel(out / "tiny_bos/main", generated=tmp_path / "gen")
    assert lm.bos == 256
    seen: list[torch.Tensor] = []
    original = lm.model.forward

    def recording(tokens, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(tokens)
        return original(tokens, *args, **kwargs)

    lm.model.forward = recording
    completions = lm.complete("Hello", n=3, max_tokens=8, seed=0)
    assert seen[0][0].tolist() == [256, *b"Hello"]
    assert len(completions) == 3 and all(c.tokens == 8 for c in completions)
