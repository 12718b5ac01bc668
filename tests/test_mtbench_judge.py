"""MT-Bench judge prompts (exact FastChat requests) and rating parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.mtbench.data import load_judge_prompts, load_references
from tasks.mtbench.judge import fill_prompt, parse_rating, prompt_name

# The judge instructions as FastChat's judge_prompts.jsonl has them (benchmark data, typo "You evaluation"
# included).
SINGLE_INSTRUCTION = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your "
    "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
    '"[[rating]]", for example: "Rating: [[5]]".'
)
MULTI_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. You "
    "evaluation should focus on the assistant's answer to the second user question. Begin your evaluation "
    "by providing a short explanation. Be as objective as possible. After providing your explanation, you "
    'must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for '
    'example: "Rating: [[5]]".\n\n'
)
Q = ("Pretend to be {Elon} Musk. Why Mars?", "Teach me dancing?")
A = ("Because {backup} of humanity.\n\n- point", "Sure! {step} one: 100% fun")


@pytest.fixture(scope="module")
def mt_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "mt_bench"
    if not path.is_dir():
        pytest.skip("shared MT-Bench data not found at ../shared/data/mt_bench")
    return path


def test_prompt_choice_follows_fastchat() -> None:
    assert prompt_name("roleplay", 0) == "single-v1"
    assert prompt_name("roleplay", 1) == "single-v1-multi-turn"
    for cat in ("math", "reasoning", "coding"):
        assert prompt_name(cat, 0) == "single-math-v1"
        assert prompt_name(cat, 1) == "single-math-v1-multi-turn"
    for cat in ("writing", "extraction", "stem", "humanities", "anything-else"):
        assert prompt_name(cat, 0) == "single-v1"


def test_turn1_request_is_exactly_fastchats(mt_dir: Path) -> None:
    prompts = load_judge_prompts(mt_dir / "judge_prompts.jsonl")
    msgs = fill_prompt(prompts["single-v1"], questions=Q, answers=A[:1], turn=0, reference=None)
    expected_user = (
        f"[Instruction]\n{SINGLE_INSTRUCTION}\n\n[Question]\n{Q[0]}\n\n"
        f"[The Start of Assistant's Answer]\n{A[0]}\n[The End of Assistant's Answer]"
    )
    assert msgs == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": expected_user},
    ]


def test_turn2_request_is_exactly_fastchats(mt_dir: Path) -> None:
    prompts = load_judge_prompts(mt_dir / "judge_prompts.jsonl")
    msgs = fill_prompt(prompts["single-v1-multi-turn"], questions=Q, answers=A, turn=1, reference=None)
    expected_user = (
        "<|The Start of Assistant A's Conversation with User|>\n\n"
        f"### User:\n{Q[0]}\n\n### Assistant A:\n{A[0]}\n\n"
        f"### User:\n{Q[1]}\n\n### Assistant A:\n{A[1]}\n\n"
        "<|The End of Assistant A's Conversation with User|>"
    )
    assert msgs == [{"role": "system", "content": MULTI_SYSTEM}, {"role": "user", "content": expected_user}]


def test_math_prompts_carry_the_gpt4_reference(mt_dir: Path) -> None:
    prompts = load_judge_prompts(mt_dir / "judge_prompts.jsonl")
    refs = load_references(mt_dir / "reference_answer" / "gpt-4.jsonl")
    assert sorted(refs) == list(range(101, 131))
    ref = refs[111]
    t1 = fill_prompt(prompts["single-math-v1"], questions=Q, answers=A[:1], turn=0, reference=ref)
    assert f"[The Start of Reference Answer]\n{ref[0]}\n[The End of Reference Answer]" in t1[1]["content"]
    assert ref[1] not in t1[1]["content"]
    t2 = fill_prompt(prompts["single-math-v1-multi-turn"], questions=Q, answers=A, turn=1, reference=ref)
    assert t2[1]["content"].startswith(
        f"<|The Start of Reference Answer|>\n\n### User:\n{Q[0]}\n\n### Reference answer:\n{ref[0]}\n\n"
        f"### User:\n{Q[1]}\n\n### Reference answer:\n{ref[1]}\n\n<|The End of Reference Answer|>"
    )
    assert (
        t2[0]["content"].startswith("Please act as an impartial judge") and "correctness" in t2[0]["content"]
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Good.\n\nRating: [[8]]", 8),
        ("Rating: [[8.5]]", 8.5),
        ("Rating: [[10.]]", 10.0),
        ("Rating: [7]", 7),
        ("an example [[5]] comes first, then [[9]]", 5),  # first match wins, as re.search does
        ("single [3] first, then double [[9]]", 9),  # the [[x]] pattern is tried first over the whole text
        ("Rating: [[11]]", 11),  # FastChat has no range check
    ],
)
def test_parse_rating_ok(text: str, value: float) -> None:
    res = parse_rating(text)
    assert res.status == "ok"
    assert res.value == value
    assert type(res.value) is type(value)  # int stays int, float stays float (ast.literal_eval)


@pytest.mark.parametrize(
    "text", ["no rating at all", "Rating: [[ 8 ]]", "Rating: 8/10", "", "[[eight]]", "[[08]]"]
)
def test_parse_rating_failures_are_parse_errors(text: str) -> None:
    res = parse_rating(text)
    assert res.status == "parse_error"
    assert res.value is None


def test_parse_rating_without_text_is_api_error() -> None:
    assert parse_rating(None).status == "api_error"
