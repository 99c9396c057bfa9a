"""Open-ended prompt sets: the built-in one, and loaders for a user's JSONL or CSV file.

The built-in prompts were written for this project. Their categories follow the kinds of
open-ended request that the Artificial Hivemind paper (Jiang et al., Infinity-Chat) found in
real chat logs: creative content, brainstorming and ideation, alternative styles and
perspectives, speculative questions, and open-ended advice, opinion and recommendation.
Every prompt has many good answers; a model that gives the same one each time is collapsing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expc.runtime.errors import RunError
from expc.safe_read import read_bounded


@dataclass(frozen=True)
class Prompt:
    """One open-ended request: a stable id (cache keys and joins use it), a category, text."""

    id: str
    category: str
    text: str


# category -> prompts. Ids are `<category>-<n>`: stable, so caches survive edits elsewhere.
_BUILTIN: dict[str, tuple[str, ...]] = {
    "creative_writing": (
        "Write a short poem about the smell of rain on a hot street.",
        "Write the opening paragraph of a story set in a lighthouse that has lost its light.",
        "Write a metaphor that describes what waiting feels like.",
        "Tell a very short fable in which a stone learns something from a river.",
        "Write a haiku about an empty train station late at night.",
        "Write a two-sentence horror story that takes place in a kitchen.",
    ),
    "brainstorming": (
        "Suggest a name for a small bakery that only opens at night.",
        "Give me ideas for a birthday present for someone who has everything.",
        "Think of a theme for a neighbourhood summer party.",
        "Propose an unusual use for an old bicycle wheel.",
        "Come up with a slogan for a library that lends tools instead of books.",
        "Invent a new board game and describe how a turn works.",
    ),
    "advice": (
        "How can I stay motivated when learning a language on my own?",
        "What should I do on my first day at a new job?",
        "How do I tell a close friend that I need more time alone?",
        "I have one free afternoon this week. How should I spend it?",
        "How can I become a better listener?",
        "What is a good way to start a habit of reading every day?",
    ),
    "opinion": (
        "Is it better to live in a big city or in a small town?",
        "What is the most overrated invention of the last hundred years?",
        "Should children learn to write by hand in the age of keyboards?",
        "Which season of the year is the best, and why?",
        "Are video games a form of art?",
        "What makes a meal memorable?",
    ),
    "speculative": (
        "What would daily life look like if people no longer needed to sleep?",
        "Imagine that animals could vote. What would change first?",
        "What might a city look like five hundred years from now?",
        "If you could add one new colour to the rainbow, what would it be like?",
        "What would happen if every book in the world disappeared overnight?",
        "Describe a world in which music has never been invented.",
    ),
    "alternative_styles": (
        "Explain how a refrigerator works in the voice of a pirate.",
        "Describe a thunderstorm as a sports commentator would.",
        "Rewrite the sentence 'the meeting is cancelled' as a line of a sonnet.",
        "Describe a morning cup of coffee as if it were a scene in a spy film.",
        "Write a product description for an ordinary pencil as if it were a luxury car.",
        "Summarise the plot of a fairy tale of your choice as a weather forecast.",
    ),
    "alternative_perspectives": (
        "Describe a busy playground from the point of view of a pigeon.",
        "Write a letter from an old umbrella to its owner.",
        "How might a tree feel about the changing of the seasons?",
        "Describe the internet to someone from the year 1800.",
        "Tell the story of a chess game from the point of view of a pawn.",
        "What would a house say about the family that lives in it?",
    ),
    "recommendation": (
        "Recommend a hobby for someone who works at a computer all day.",
        "Suggest a dish to cook for a dinner guest I want to impress.",
        "What book would you recommend to someone who rarely reads?",
        "Recommend a place to visit for a quiet weekend away.",
        "Suggest a houseplant for a dark apartment and say why.",
        "What film would you recommend for a rainy evening?",
    ),
}

CATEGORIES: tuple[str, ...] = tuple(_BUILTIN)
BUILTIN_PROMPTS: tuple[Prompt, ...] = tuple(
    Prompt(f"{category}-{index}", category, text)
    for category, texts in _BUILTIN.items()
    for index, text in enumerate(texts, start=1)
)

# Accepted column names, first match wins. `query` is Infinity-Chat's column (the
# INFINITY-CHAT100 set exported with `datasets`: `ds.to_json(...)` or `ds.to_csv(...)`).
TEXT_COLUMNS = ("prompt", "query", "text", "instruction", "question")
ID_COLUMNS = ("id", "prompt_id", "query_id")
CATEGORY_COLUMNS = ("category", "top_category", "type")
# Chat-style rows: a list of {"role"/"from", "content"/"value"}; the first user turn counts.
CHAT_COLUMNS = ("messages", "conversation", "conversations")
DEFAULT_CATEGORY = "uncategorized"
# Prompt sets are thousands of lines; a larger file is a mistake (or not a file).
MAX_PROMPT_FILE_BYTES = 256 << 20


def select_prompts(
    prompts: Iterable[Prompt], categories: Iterable[str] | None = None, limit: int = 0
) -> list[Prompt]:
    """Only prompts of these categories (None or empty: all), at most `limit` per category
    (0: all), in their order."""
    wanted = set(categories or ())
    counts: dict[str, int] = {}
    kept = []
    for prompt in prompts:
        if wanted and prompt.category not in wanted:
            continue
        counts[prompt.category] = counts.get(prompt.category, 0) + 1
        if limit <= 0 or counts[prompt.category] <= limit:
            kept.append(prompt)
    return kept


def builtin_prompts(categories: Iterable[str] | None = None, limit: int = 0) -> list[Prompt]:
    """The built-in set, optionally only some categories and at most `limit` per category."""
    unknown = [c for c in categories or () if c not in _BUILTIN]
    if unknown:
        raise RunError(
            f"unknown prompt categories {unknown}; the built-in set has {', '.join(CATEGORIES)}"
        )
    return select_prompts(BUILTIN_PROMPTS, categories, limit)


def _first(row: Mapping[str, Any], columns: tuple[str, ...]) -> Any:
    for column in columns:
        value = row.get(column)
        if value not in (None, ""):
            return value
    return None


def _chat_text(turns: Any) -> str | None:
    if not isinstance(turns, list):
        return None
    for turn in turns:
        if isinstance(turn, Mapping) and turn.get("role", turn.get("from")) in ("user", "human"):
            text = turn.get("content", turn.get("value"))
            return text if isinstance(text, str) else None
    return None


def prompt_from_row(row: Mapping[str, Any], index: int, where: str) -> Prompt:
    """One row of a user's file -> a Prompt; the row's number names it when it has no id."""
    text = _first(row, TEXT_COLUMNS)
    if text is None:
        text = _chat_text(_first(row, CHAT_COLUMNS))
    if not isinstance(text, str) or not text.strip():
        raise RunError(
            f"{where}: no prompt text; give one of the columns {', '.join(TEXT_COLUMNS)} "
            f"(or a chat list in {', '.join(CHAT_COLUMNS)})"
        )
    ident = _first(row, ID_COLUMNS)
    category = _first(row, CATEGORY_COLUMNS)
    return Prompt(
        id=str(ident) if ident is not None else f"p{index:05d}",
        category=str(category) if category is not None else DEFAULT_CATEGORY,
        text=text.strip(),
    )


def load_prompts(path: Path | str) -> list[Prompt]:
    """Prompts from a `.jsonl` (one JSON object a line) or `.csv` (a header row) file.

    Columns: the text in `prompt`, `query` (Infinity-Chat), `text`, `instruction` or
    `question`, or a chat list in `messages`/`conversation(s)` (its first user turn);
    optional `id`/`prompt_id`/`query_id` (default: `p` + the 0-based row number) and
    `category`/`top_category`/`type` (default: `uncategorized`). Ids must be unique.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"prompt file {str(path)!r} not found")
    rows: list[tuple[int, Mapping[str, Any], str]] = []
    if path.suffix in (".jsonl", ".csv"):
        try:  # a regular file, bounded: not a pipe or /dev/zero behind a prompt file's name
            data = read_bounded(path, MAX_PROMPT_FILE_BYTES, what="prompt file")
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise RunError(f"cannot read prompt file {str(path)!r}: {error}") from None
    if path.suffix == ".jsonl":
        with io.StringIO(text, newline=None) as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RunError(f"{path}:{number}: not JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise RunError(f"{path}:{number}: expected a JSON object")
                rows.append((len(rows), row, f"{path}:{number}"))
    elif path.suffix == ".csv":
        with io.StringIO(text, newline="") as file:
            for number, row in enumerate(csv.DictReader(file), start=2):
                rows.append((len(rows), row, f"{path}:{number}"))
    else:
        raise RunError(f"prompt file {str(path)!r}: use a .jsonl or .csv file")
    prompts = [prompt_from_row(row, index, where) for index, row, where in rows]
    if not prompts:
        raise RunError(f"prompt file {str(path)!r} has no prompts")
    seen: set[str] = set()
    for prompt in prompts:
        if prompt.id in seen:
            raise RunError(f"prompt file {str(path)!r}: id {prompt.id!r} appears twice")
        seen.add(prompt.id)
    return prompts
