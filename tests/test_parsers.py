"""Golden tests for the WikiRoleEval judge parsers (judges/parsers.py)."""

from __future__ import annotations

import pytest

from harness.types import ParseResult
from judges.parsers import parse_consistency, parse_knowledge, parse_rejection

OK = "ok"
E3 = "Edward III of England"
VERDICT = "The most suitable role is "
ERR = "parse_error"

EN_ANALYSIS = (
    "The reply talks about the siege of Calais and the claim to the French crown in the first person.\n"
    "Anne, Princess Royal lived in the 20th century, and Zhang Ziyi is an actress, so neither fits.\n"
    "Jean-Pierre Sauvage is a chemist with no link to medieval warfare.\n"
)
ZH_ANALYSIS = (
    "回复以第一人称谈到了加来围城以及对法国王位的主张。\n"
    "安妮长公主生活在二十世纪，章子怡是演员，因此都不符合。\n"
)

CONSISTENCY_CASES: list[tuple[str, str | None, str, str, object]] = [
    # id, text, lang, expected status, expected value (name) or reason
    ("plain", VERDICT + f"[{E3}]", "en", OK, E3),
    ("analysis_then_verdict", EN_ANALYSIS + VERDICT + "[Edward III of England].", "en", OK,
     E3),
    ("lowercase_phrase", EN_ANALYSIS + "so the most suitable role is [Edward III of England]", "en", OK,
     E3),
    ("upper_phrase", "THE MOST SUITABLE ROLE IS [Edward III of England]", "en", OK, E3),
    ("bold_around_bracket", EN_ANALYSIS + "**The most suitable role is [Edward III of England]**", "en", OK,
     E3),
    ("bold_inside_bracket", "The most suitable role is: [**Edward III of England**]", "en", OK,
     E3),
    ("colon_and_bold", "The most suitable role is: **[Anne, Princess Royal]**", "en", OK,
     "Anne, Princess Royal"),
    ("backticks", "The most suitable role is `[Jean-Pierre Sauvage]`", "en", OK, "Jean-Pierre Sauvage"),
    ("spaces_in_brackets", "The most suitable role is [  Edward III of England  ]  \n", "en", OK,
     E3),
    ("trailing_spaces_lines", EN_ANALYSIS + VERDICT + "[Edward III of England]   \n\n  ", "en", OK,
     E3),
    ("parentheses_in_name", "The most suitable role is [Mercury (planet)]", "en", OK, "Mercury (planet)"),
    ("comma_in_name", "The most suitable role is [Anne, Princess Royal]", "en", OK, "Anne, Princess Royal"),
    ("instruction_quoted_first",
     "The instruction says to finish with 'The most suitable role is [NAME]'.\n" + EN_ANALYSIS
     + VERDICT + f"[{E3}]", "en", OK, E3),
    ("two_verdicts_last_wins",
     "At first glance, the most suitable role is [Zhang Ziyi]. But the reply mentions Calais.\n"
     + VERDICT + f"[{E3}]", "en", OK, E3),
    ("non_greedy_bracket",
     VERDICT + "[Edward III of England] [confidence: high]", "en", OK, E3),
    ("case_preserved", VERDICT + "[edward iii of england]", "en", OK, "edward iii of england"),
    ("zh_plain", ZH_ANALYSIS + "最符合的角色为[爱德华三世]", "zh", OK, "爱德华三世"),
    ("zh_fullwidth_brackets", ZH_ANALYSIS + "最符合的角色为【爱德华三世】", "zh", OK, "爱德华三世"),
    ("zh_colon_bold", ZH_ANALYSIS + "**最符合的角色为：[章子怡]**", "zh", OK, "章子怡"),
    ("zh_shi_variant", "最符合的角色是[章子怡]。", "zh", OK, "章子怡"),
    ("zh_name_with_parens", "最符合的角色为[李白（唐代诗人）]", "zh", OK, "李白（唐代诗人）"),
    ("zh_text_en_phrase", ZH_ANALYSIS + "The most suitable role is [爱德华三世]", "zh", OK, "爱德华三世"),
    ("en_text_zh_phrase", EN_ANALYSIS + "最符合的角色为[Edward III of England]", "en", OK, E3),
    ("none", None, "en", ERR, "empty"),
    ("empty", "", "zh", ERR, "empty"),
    ("whitespace", "  \n\t \n", "en", ERR, "empty"),
    ("no_phrase", EN_ANALYSIS + "I think it is Edward III of England.", "en", ERR, "no_verdict"),
    ("phrase_without_brackets", "The most suitable role is Edward III of England.", "en", ERR, "no_verdict"),
    ("bracket_on_next_line", "The most suitable role is\n[Edward III of England]", "en", ERR, "no_verdict"),
    ("unclosed_bracket", "The most suitable role is [Edward III of England", "en", ERR, "no_verdict"),
    ("placeholder_only", "The most suitable role is [NAME]", "en", ERR, "placeholder"),
    ("placeholder_character_name", "The most suitable role is [character name].", "en", ERR, "placeholder"),
    ("placeholder_last_after_real",
     VERDICT + "[Edward III of England]\nRemember: The most suitable role is [NAME]", "en", ERR,
     "placeholder"),
    ("placeholder_zh", "最符合的角色为[角色名]", "zh", ERR, "placeholder"),
    ("empty_brackets", "The most suitable role is []", "en", ERR, "placeholder"),
    ("refusal_en", "I'm sorry, but I can't help identifying this character.", "en", ERR, "judge_refused"),
    ("refusal_curly_apostrophe", "I’m sorry, I cannot determine that.", "en", ERR, "judge_refused"),
    ("refusal_zh", "抱歉，我无法判断这段对话属于哪个角色。", "zh", ERR, "judge_refused"),
]


@pytest.mark.parametrize(
    ("text", "lang", "status", "expected"),
    [c[1:] for c in CONSISTENCY_CASES],
    ids=[c[0] for c in CONSISTENCY_CASES],
)
def test_parse_consistency(text: str | None, lang: str, status: str, expected: object) -> None:
    result = parse_consistency(text, lang)
    assert isinstance(result, ParseResult)
    assert result.status == status
    if status == OK:
        assert result.value == expected
        assert result.reason is None
    else:
        assert result.value is None
        assert result.reason == expected


def test_parse_consistency_rejects_unknown_lang() -> None:
    with pytest.raises(ValueError, match="fr"):
        parse_consistency("The most suitable role is [A]", "fr")


REJECTION_CASES: list[tuple[str, str | None, str, object]] = [
    ("one", "1", OK, 1),
    ("zero", "0", OK, 0),
    ("padded", "  1 \n", OK, 1),
    ("trailing_period", "0.", OK, 0),
    ("zh_period", "1。", OK, 1),
    ("bold", "**1**", OK, 1),
    ("backticks", "`0`", OK, 0),
    ("double_quotes", '"1"', OK, 1),
    ("single_quotes", "'0'", OK, 0),
    ("answer_prefix", "Answer: 1", OK, 1),
    ("bold_answer_prefix", "**Answer:** 0", OK, 0),
    ("answer_then_newline", "Answer:\n1", OK, 1),
    ("zh_answer_prefix", "答案：1", OK, 1),
    ("analysis_then_digit", "The character says it has never heard of Australia and declines.\n\n1\n", OK, 1),
    ("none", None, ERR, "empty"),
    ("empty", "", ERR, "empty"),
    ("blank", " \n ", ERR, "empty"),
    ("yes", "yes", ERR, "no_verdict"),
    ("both", "1 or 0", ERR, "no_verdict"),
    ("ten", "10", ERR, "no_verdict"),
    ("half", "0.5", ERR, "no_verdict"),
    ("two", "2", ERR, "no_verdict"),
    ("digit_then_prose", "1\nThe character refused because it lived in the 14th century.", ERR, "no_verdict"),
    ("digit_with_words", "1 (refused)", ERR, "no_verdict"),
    ("refusal", "I'm sorry, but I can't assist with that request.", ERR, "judge_refused"),
    ("refusal_zh", "抱歉，我不能回答这个问题。", ERR, "judge_refused"),
]


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [c[1:] for c in REJECTION_CASES],
    ids=[c[0] for c in REJECTION_CASES],
)
def test_parse_rejection(text: str | None, status: str, expected: object) -> None:
    result = parse_rejection(text)
    assert result.status == status
    if status == OK:
        assert result.value == expected
        assert type(result.value) is int
    else:
        assert result.value is None
        assert result.reason == expected


KNOWLEDGE_EN = (
    "The reply correctly states that Edward III claimed the French throne through his mother, Isabella.\n"
    "It also mentions the Treaty of Brétigny, consistent with the tips, but misdates it to 1350.\n"
    "Overall the answer is mostly accurate with one factual slip.\n"
)
KNOWLEDGE_ZH = (
    "回复正确指出了爱德华三世通过母亲伊莎贝拉主张法国王位，与提示一致。\n"
    "但把《布雷蒂尼条约》的年份写错了。\n"
)

KNOWLEDGE_CASES: list[tuple[str, str | None, str, object]] = [
    ("bare", "7", OK, 7),
    ("analysis_then_score", KNOWLEDGE_EN + "7", OK, 7),
    ("score_prefix", KNOWLEDGE_EN + "Score: 7", OK, 7),
    ("score_no_space", KNOWLEDGE_EN + "score:7", OK, 7),
    ("fullwidth_colon", KNOWLEDGE_EN + "Score：7", OK, 7),
    ("zh_pingfen", KNOWLEDGE_ZH + "评分：7", OK, 7),
    ("zh_fenshu", KNOWLEDGE_ZH + "分数: 7", OK, 7),
    ("zh_fen_suffix", KNOWLEDGE_ZH + "评分：8分", OK, 8),
    ("slash_ten", KNOWLEDGE_EN + "7/10", OK, 7),
    ("score_slash_ten", KNOWLEDGE_EN + "Score: 7/10", OK, 7),
    ("trailing_period", KNOWLEDGE_EN + "7.", OK, 7),
    ("bold", KNOWLEDGE_EN + "**7**", OK, 7),
    ("bold_prefix", KNOWLEDGE_EN + "**Score:** 9", OK, 9),
    ("heading", KNOWLEDGE_EN + "### Score: 6", OK, 6),
    ("trailing_blank_lines", KNOWLEDGE_EN + "10  \n\n   \n", OK, 10),
    ("one", "Nothing in the reply is correct.\n1", OK, 1),
    ("out_of_ten_words", KNOWLEDGE_EN + "8 out of 10", OK, 8),
    ("none", None, ERR, "empty"),
    ("empty", "", ERR, "empty"),
    ("zero", KNOWLEDGE_EN + "0", ERR, "out_of_range"),
    ("eleven", KNOWLEDGE_EN + "Score: 11", ERR, "out_of_range"),
    ("eleven_slash", KNOWLEDGE_EN + "11/10", ERR, "out_of_range"),
    ("decimal", KNOWLEDGE_EN + "7.5", ERR, "no_verdict"),
    ("word", KNOWLEDGE_EN + "seven", ERR, "no_verdict"),
    ("trailing_prose", KNOWLEDGE_EN + "7 because the date is wrong", ERR, "no_verdict"),
    ("score_not_last", "Score: 7\n" + KNOWLEDGE_EN.rstrip(), ERR, "no_verdict"),
    ("other_scale", KNOWLEDGE_EN + "7/5", ERR, "no_verdict"),
    ("negative", KNOWLEDGE_EN + "-3", ERR, "no_verdict"),
    ("refusal", "I'm sorry, I can't evaluate this answer.", ERR, "judge_refused"),
]


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [c[1:] for c in KNOWLEDGE_CASES],
    ids=[c[0] for c in KNOWLEDGE_CASES],
)
def test_parse_knowledge(text: str | None, status: str, expected: object) -> None:
    result = parse_knowledge(text)
    assert result.status == status
    if status == OK:
        assert result.value == expected
        assert type(result.value) is int
    else:
        assert result.value is None
        assert result.reason == expected


def test_refusal_label_only_without_verdict() -> None:
    # A completion that opens apologetically but still ends with a verdict is parsed, not refused.
    text = "I'm sorry to say the reply is weak.\n" + KNOWLEDGE_EN + "Score: 3"
    assert parse_knowledge(text) == ParseResult(status="ok", value=3)
    result = parse_consistency("Sorry, hard one. The most suitable role is [Zhang Ziyi]", "en")
    assert result.value == "Zhang Ziyi"
