"""The KV-cache sampler: incremental decoding equals full recomputation for every attention
variant the LM template generates, and the top-p / min-p filters on hand-made distributions."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import MINIMAL, compile_text, import_generated

from expc.runtime.sampling import filter_probs, generate, next_tokens

# Every attention variant and norm layout the template supports, in one package.
VARIANTS = {
    "vanilla": {"attention_gate": "none"},
    "g1_elementwise": {"attention_gate": "elementwise"},
    "g1_headwise_silu": {"attention_gate": "headwise", "attention_gate_activation": "silu"},
    "g2_value": {"attention_gate": "elementwise", "attention_gate_position": "value"},
    "g2_headwise": {"attention_gate": "headwise", "attention_gate_position": "value"},
    "post": {"attention_gate": "elementwise", "norm_layout": "post"},
    "sandwich": {"attention_gate": "headwise", "norm_layout": "sandwich"},
}
SPEC = (
    MINIMAL.replace("layers = 1", "layers = 2")
    .replace("width = 16", "width = 32")
    .replace("heads = 2", "heads = 4")
    + "metrics = [val_loss, first_token_attention, gate_score]\n"
    + "variant vanilla { model.attention.gate = none }\n"
    + "variant g1 { model.attention.gate = elementwise }\n"
    + "variant g1_silu { model.attention.gate = headwise model.attention.gate_activation = silu }\n"
    + "variant g2 { model.attention.gate = elementwise model.attention.gate_position = value }\n"
    + "variant post { model.norm_layout = post }\n"
    + "variant sandwich { model.norm_layout = sandwich }\n"
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory):
    model_module, _ = import_generated(compile_text(SPEC).files, tmp_path_factory.mktemp("kv"))
    return model_module


def make_model(package, fields: dict[str, str], seed: int = 0):
    torch.manual_seed(seed)
    config = package.ModelConfig(layers=2, width=32, heads=4, **fields)
    model = package.Transformer(config).eval()
    # Larger weights than the init's std 0.02, so that attention is far from uniform and a
    # wrong mask or position would change the logits visibly.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0)
    return model


@pytest.mark.parametrize("name", list(VARIANTS))
def test_incremental_logits_equal_full_forward(package, name: str) -> None:
    # float64, so that any difference is a bug and not float32 rounding in a different order.
    model = make_model(package, VARIANTS[name]).double()
    tokens = torch.randint(0, 256, (3, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = model(tokens)
        cache = model.new_cache(13)
        # A prompt of 5, a chunk of 3 (several queries at an offset), then one token at a time.
        pieces = [model(tokens[:, :5], cache=cache)[0], model(tokens[:, 5:8], cache=cache)[0]]
        pieces += [model(tokens[:, t : t + 1], cache=cache)[0] for t in range(8, 13)]
    assert cache.length == 13
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-9, atol=1e-9)
    # The test has teeth: the full forward of a suffix alone (positions from 0) differs.
    with torch.no_grad():
        alone, _ = model(tokens[:, 8:])
    assert (alone[:, -1] - full[:, -1]).abs().max() > 1e-2


def test_training_forward_is_unchanged_by_an_unused_cache_argument(package) -> None:
    model = make_model(package, VARIANTS["g1_elementwise"])
    tokens = torch.randint(0, 256, (2, 9))
    logits, loss = model(tokens, tokens)
    logits_again, loss_again = model(tokens, tokens, cache=None)
    torch.testing.assert_close(logits, logits_again, rtol=0, atol=0)
    assert loss is not None and loss_again is not None and loss.item() == loss_again.item()


def test_cache_refuses_more_positions_than_its_capacity(package) -> None:
    model = make_model(package, VARIANTS["vanilla"])
    cache = model.new_cache(4)
    with torch.no_grad(), pytest.raises(ValueError, match="4 positions"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("name", ["vanilla", "g1_elementwise", "g2_value"])
@pytest.mark.parametrize("temperature,top_p,min_p", [(1.0, 1.0, 0.0), (0.7, 0.9, 0.05)])
def test_cached_sampling_draws_the_same_tokens(
    package, name: str, temperature: float, top_p: float, min_p: float
) -> None:
    model = make_model(package, VARIANTS[name])
    prompt = torch.randint(0, 256, (4, 6), generator=torch.Generator().manual_seed(2))
    outputs = [
        generate(
            model,
            prompt,
            20,
            temperature=temperature,
            top_p=top_p,
            min_p=min_p,
            generator=torch.Generator().manual_seed(3),
            use_cache=use_cache,
        )
        for use_cache in (True, False)
    ]
    assert outputs[0].shape == (4, 20) and outputs[0].dtype == torch.long
    assert torch.equal(outputs[0], outputs[1])
    assert len(set(outputs[0].flatten().tolist())) > 5  # really sampled, not a constant


def test_greedy_is_the_argmax_continuation(package) -> None:
    model = make_model(package, VARIANTS["g1_headwise_silu"])
    prompt = torch.randint(0, 256, (2, 4))
    out = generate(model, prompt, 6, temperature=0.0)
    with torch.no_grad():
        sequence = torch.cat((prompt, out), dim=1)
        logits, _ = model(sequence[:, :-1])
    assert torch.equal(logits[:, 3:].argmax(-1), out)
    assert torch.equal(generate(model, prompt, 6, temperature=0.0, use_cache=False), out)


class Counter:
    """A fake model whose next token is always (last token + 1) mod 10, to test stopping."""

    def new_cache(self, capacity: int) -> list[int]:
        return []

    def __call__(self, tokens: torch.Tensor, cache: list[int] | None = None):
        logits = torch.nn.functional.one_hot((tokens + 1) % 10, 10).float() * 50.0
        return logits, None


@pytest.mark.parametrize("use_cache", [True, False])
def test_rows_stop_independently_and_pad_with_the_stop_token(use_cache: bool) -> None:
    prompt = torch.tensor([[5], [1], [8]])
    out = generate(Counter(), prompt, 5, temperature=0.0, stop_token=3, use_cache=use_cache)
    expected = [[6, 7, 8, 9, 0], [2, 3, 3, 3, 3], [9, 0, 1, 2, 3]]
    assert out.tolist() == expected
    # Every row stops early: sampling ends and the rest is filled.
    out = generate(Counter(), torch.tensor([[1], [2]]), 6, temperature=0.0, stop_token=3)
    assert out.tolist() == [[2, 3, 3, 3, 3, 3], [3, 3, 3, 3, 3, 3]]


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor([[math.log(p) for p in probs]])


def test_top_p_keeps_the_smallest_head_reaching_the_mass() -> None:
    # Unsorted on purpose: the filter must map back through the sort.
    logits = logits_of([0.15, 0.5, 0.05, 0.3])
    torch.testing.assert_close(
        filter_probs(logits, top_p=0.7), torch.tensor([[0.0, 0.625, 0.0, 0.375]])
    )
    torch.testing.assert_close(
        filter_probs(logits, top_p=0.85), torch.tensor([[0.15, 0.5, 0.0, 0.3]]) / 0.95
    )
    # The most likely token survives any top_p; top_p = 1 keeps everything.
    torch.testing.assert_close(filter_probs(logits, top_p=0.01), torch.tensor([[0.0, 1, 0, 0]]))
    torch.testing.assert_close(filter_probs(logits), torch.tensor([[0.15, 0.5, 0.05, 0.3]]))


def test_min_p_drops_tokens_below_a_fraction_of_the_top_one() -> None:
    logits = logits_of([0.15, 0.5, 0.05, 0.3])
    # Threshold 0.2 * 0.5 = 0.1 drops only the 0.05 token.
    torch.testing.assert_close(
        filter_probs(logits, min_p=0.2), torch.tensor([[0.15, 0.5, 0.0, 0.3]]) / 0.95
    )
    # Threshold 0.5 * 0.5 = 0.25 keeps 0.5 and 0.3.
    torch.testing.assert_close(
        filter_probs(logits, min_p=0.5), torch.tensor([[0.0, 0.5, 0.0, 0.3]]) / 0.8
    )
    # Both filters: top-p 0.85 keeps {0.5, 0.3, 0.15}, min-p 0.5 then keeps {0.5, 0.3}.
    torch.testing.assert_close(
        filter_probs(logits, top_p=0.85, min_p=0.5), torch.tensor([[0.0, 0.5, 0.0, 0.3]]) / 0.8
    )


def test_temperature_sharpens_and_flattens() -> None:
    logits = logits_of([0.1, 0.2, 0.7])
    hot = torch.tensor([[0.1, 0.2, 0.7]]) ** 0.5
    torch.testing.assert_close(filter_probs(logits, temperature=2.0), hot / hot.sum())
    cold = torch.tensor([[0.1, 0.2, 0.7]]) ** 2
    torch.testing.assert_close(filter_probs(logits, temperature=0.5), cold / cold.sum())


def test_draws_follow_the_filtered_distribution() -> None:
    logits = logits_of([0.15, 0.5, 0.05, 0.3]).expand(40000, 4)
    tokens = next_tokens(logits, top_p=0.85, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(tokens, minlength=4).float() / len(tokens)
    expected = torch.tensor([0.15, 0.5, 0.0, 0.3]) / 0.95
    assert frequencies[2] == 0
    torch.testing.assert_close(frequencies, expected, rtol=0, atol=0.01)


def test_cache_with_the_fused_triton_gate(tmp_path) -> None:
    """The cuda spec's model gates through the Triton kernel (interpreted on CPU here)."""
    from pathlib import Path

    from expc.compiler.pipeline import compile_path

    files = compile_path(Path("specs/gated_attention_cuda.exp")).files
    package, _ = import_generated(files, tmp_path)
    torch.manual_seed(0)
    model = package.Transformer(package.ModelConfig(layers=1, width=32, heads=2)).eval()
    tokens = torch.randint(0, 256, (2, 6))
    with torch.no_grad():
        full, _ = model(tokens)
        cache = model.new_cache(6)
        pieces = [model(tokens[:, :4], cache=cache)[0]]
        pieces += [model(tokens[:, t : t + 1], cache=cache)[0] for t in (4, 5)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)
