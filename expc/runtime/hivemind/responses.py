"""Responses: one sampled answer of one model to one prompt, and the JSONL files that hold them."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from expc.runtime.errors import RunError
from expc.runtime.hivemind.prompts import Prompt
from expc.runtime.hivemind.settings import SamplingSettings


@dataclass(frozen=True)
class Response:
    """Sample number `sample` (0-based) of `model` for the prompt with id `prompt_id`."""

    prompt_id: str
    model: str
    sample: int
    text: str


def group(responses: Iterable[Response]) -> dict[str, dict[str, list[Response]]]:
    """model -> prompt id -> that model's responses to that prompt, in sample order."""
    table: dict[str, dict[str, list[Response]]] = defaultdict(lambda: defaultdict(list))
    for response in responses:
        table[response.model][response.prompt_id].append(response)
    for by_prompt in table.values():
        for items in by_prompt.values():
            items.sort(key=lambda r: r.sample)
    return {model: dict(by_prompt) for model, by_prompt in table.items()}


def write_responses(path: Path, responses: Sequence[Response]) -> None:
    """All responses as JSONL (the format `JsonlResponses` reads), replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        for response in responses:
            row = {
                "prompt_id": response.prompt_id,
                "model": response.model,
                "sample": response.sample,
                "response": response.text,
            }
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


class JsonlResponses:
    """A generator that reads answers a user already has, one JSON object a line.

    Each line names the prompt by `prompt_id` (or `id`; or the prompt's exact text in
    `prompt`/`query`), the `model`, and either one `response` or a list `responses`.
    Only the prompts of the experiment's prompt set are kept, and of each (model, prompt)
    the first `settings.n` samples in file order.
    """

    def __init__(self, path: Path | str, models: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.models = list(models) if models else None
        self.name = self.path.stem

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Response]:
        if not self.path.is_file():
            raise RunError(f"responses file {str(self.path)!r} not found")
        by_id = {p.id: p for p in prompts}
        by_text = {p.text: p for p in prompts}
        texts: dict[tuple[str, str], list[str]] = defaultdict(list)
        with open(self.path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                where = f"{self.path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RunError(f"{where}: not JSON ({error.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("model"), str):
                    raise RunError(f"{where}: expected an object with a string `model`")
                prompt_id = row.get("prompt_id", row.get("id"))
                if prompt_id is None:
                    prompt = by_text.get(row.get("prompt", row.get("query")))
                    prompt_id = prompt.id if prompt is not None else None
                if prompt_id is None or str(prompt_id) not in by_id:
                    continue  # a prompt outside this experiment's set
                if self.models is not None and row["model"] not in self.models:
                    continue
                answers = row["responses"] if "responses" in row else [row.get("response")]
                if not all(isinstance(a, str) for a in answers):
                    raise RunError(f"{where}: `response` must be a string (or `responses` a list)")
                texts[(row["model"], str(prompt_id))].extend(answers)
        if not texts:
            raise RunError(f"responses file {str(self.path)!r} has no answers to these prompts")
        return [
            Response(prompt_id, model, index, text)
            for (model, prompt_id), answers in texts.items()
            for index, text in enumerate(answers[: settings.n])
        ]
