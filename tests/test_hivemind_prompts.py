"""Prompt sets: the built-in one, a user's JSONL/CSV file, an Infinity-Chat export."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from expc.runtime import RunError
from expc.runtime.hivemind import BUILTIN_PROMPTS, CATEGORIES, builtin_prompts, load_prompts


def test_builtin_set_is_large_varied_and_stable() -> None:
    assert len(BUILTIN_PROMPTS) >= 40
    assert len({p.id for p in BUILTIN_PROMPTS}) == len(BUILTIN_PROMPTS)
    assert len({p.text for p in BUILTIN_PROMPTS}) == len(BUILTIN_PROMPTS)
    per_category = Counter(p.category for p in BUILTIN_PROMPTS)
    assert set(per_category) == set(CATEGORIES)
    for needed in ("creative_writing", "brainstorming", "advice", "opinion"):
        assert per_category[needed] >= 5
    assert all(p.id.startswith(p.category + "-") for p in BUILTIN_PROMPTS)
    assert all(10 < len(p.text) < 200 for p in BUILTIN_PROMPTS)  # the paper's 15-200 chars


def test_builtin_subsets_by_category_and_limit() -> None:
    chosen = builtin_prompts(["advice", "opinion"], limit=2)
    assert [p.id for p in chosen] == ["advice-1", "advice-2", "opinion-1", "opinion-2"]
    with pytest.raises(RunError, match="unknown prompt categories"):
        builtin_prompts(["poetry"])


def test_infinity_chat_export_has_only_a_query_column(tmp_path: Path) -> None:
    # `load_dataset("liweijiang/infinite-chats-eval")["train"].to_json(path)` writes this.
    path = tmp_path / "infinity_chat100.jsonl"
    path.write_text('{"query":"Write a metaphor about time."}\n\n{"query":"Name a cat."}\n')
    prompts = load_prompts(path)
    assert [(p.id, p.category, p.text) for p in prompts] == [
        ("p00000", "uncategorized", "Write a metaphor about time."),
        ("p00001", "uncategorized", "Name a cat."),
    ]


def test_csv_with_ids_categories_and_quoted_commas(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text('id,prompt,category\nx1,"Hello, world",greeting\nx2,Why?,\n')
    prompts = load_prompts(path)
    assert [(p.id, p.category, p.text) for p in prompts] == [
        ("x1", "greeting", "Hello, world"),
        ("x2", "uncategorized", "Why?"),
    ]


def test_chat_rows_use_their_first_user_turn(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "system", "content": "Short."}, {"role": "user", "content": "A"}]},
        {"conversations": [{"from": "human", "value": "B"}, {"from": "gpt", "value": "ok"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p.text for p in load_prompts(path)] == ["A", "B"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", '{"query": "ok"}\n{"answer": "no prompt"}\n', r"a.jsonl:2: no prompt text"),
        ("b.jsonl", '{"query": "ok"}\nnot json\n', r"b.jsonl:2: not JSON"),
        ("c.csv", "id,prompt\n1,a\n1,b\n", "id '1' appears twice"),
        ("d.txt", "hello\n", "use a .jsonl or .csv file"),
        ("e.jsonl", "\n", "has no prompts"),
    ],
)
def test_bad_prompt_files_say_where_and_what(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(RunError, match=message):
        load_prompts(path)


def test_missing_prompt_file() -> None:
    with pytest.raises(RunError, match="not found"):
        load_prompts("no/such/file.jsonl")
