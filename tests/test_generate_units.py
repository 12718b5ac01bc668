"""Unit tests of the generator: output parsing, filters, prompts, index, decoding options."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ditto_train.generate.evidence import overlap_evidence
from ditto_train.generate.kb_index import KnowledgeIndex, in_holdout, role_rng
from ditto_train.generate.output import candidate_text, first_sentence
from ditto_train.generate.parsing import (
    breaks_character,
    check_response,
    parse_evidence,
    parse_queries,
    select_queries,
)
from ditto_train.generate.prompts import Prompts, approx_tokens, load_templates, truncate_to_tokens
from ditto_train.generate.scripted import prompt_kind, scripted_reply
from ditto_train.generate.supervisor import parse_gen_kwargs, sampling_params
from ditto_train.knowledge.schema import RoleProfile, WikiArticle
from harness.errors import ConfigError, DataError


def _profile(label: str, lang: str = "en", **kw: object) -> RoleProfile:
    return RoleProfile.model_validate({"id": label, "label": label, "lang": lang, **kw})


@pytest.mark.parametrize(
    ("text", "ok", "questions", "reason"),
    [
        ('[{"question": "Who are you?"}, {"question": " Why? "}]', True, ("Who are you?", "Why?"), None),
        ('Sure:\n```json\n[{"question": "A?", "explanation": "x"}]\n```', True, ("A?",), None),
        ('Here: [{"question": "A?"}] hope it helps', True, ("A?",), None),
        ('<think>plan [1]</think>[{"question": "A?"}]', True, ("A?",), None),
        ('["Who are you?"]', False, (), "item_without_question"),
        ('{"question": "A?"}', False, (), "not_a_list"),
        ("[]", False, (), "not_a_list"),
        ("I cannot help with that.", False, (), "not_json"),
        ("", False, (), "empty"),
        (None, False, (), "empty"),
    ],
)
def test_parse_queries(text: str | None, ok: bool, questions: tuple[str, ...], reason: str | None) -> None:
    res = parse_queries(text)
    assert (res.ok, res.questions, res.reason) == (ok, questions, reason)


def test_select_queries_dedups_across_types_and_caps() -> None:
    seen: set[str] = set()
    kept, dropped = select_queries(
        ("Who are you?", "who are you", "", "x" * 50, "Q2?", "Q3?", "Q4?"), 3, 40, seen
    )
    assert kept == ["Who are you?", "Q2?", "Q3?"]
    assert dropped == {"duplicate_query": 1, "empty_query": 1, "overlong_query": 1, "surplus_query": 1}
    kept2, dropped2 = select_queries(("Q2 ?", "New one?"), 3, 40, seen)  # second type sees the first's keys
    assert kept2 == ["New one?"] and dropped2 == {"duplicate_query": 1}


@pytest.mark.parametrize(
    ("text", "lang", "breaks"),
    [
        ("As an AI language model, I cannot answer.", "en", True),
        ("I'm just an AI assistant.", "en", True),
        ("According to the provided profile, I was born in Ulm.", "en", True),
        ("My knowledge cutoff prevents me from knowing.", "en", True),
        ("I was born in Ulm, and the AI of your century is beyond me.", "en", False),
        ("作为一个人工智能，我无法回答。", "zh", True),
        ("我是一个语言模型。", "zh", True),
        ("根据提供的资料，我出生于乌尔姆。", "zh", True),
        ("我出生在乌尔姆，小时候喜欢拉小提琴。", "zh", False),
    ],
)
def test_breaks_character(text: str, lang: str, breaks: bool) -> None:
    assert breaks_character(text, lang) is breaks


def test_check_response_reasons() -> None:
    assert check_response("  ", "en", 100) == ("", "empty_response")
    assert check_response("x" * 101, "en", 100)[1] == "overlong_response"
    assert check_response("<think>hmm</think> Fine, thank you.", "en", 100) == ("Fine, thank you.", None)


def test_parse_evidence() -> None:
    assert parse_evidence("Facts:\n- One.\n* Two.\n1. Three.\nnoise") == ["- One.", "- Two.", "- Three."]
    assert parse_evidence("no bullets here") == []


def test_truncation_budget_and_boundaries() -> None:
    text = "First paragraph here.\n\n== Section ==\nSecond paragraph is longer than the first one.\nThird."
    assert truncate_to_tokens(text, 1000) == text
    cut = truncate_to_tokens(text, 8)
    assert cut == "First paragraph here."  # the dangling heading is not kept
    assert approx_tokens("爱因斯坦") == 4 and approx_tokens("abcdefgh") == 2
    long_zh = "这是一个很长的句子。" * 50
    assert approx_tokens(truncate_to_tokens(long_zh, 30)) <= 30
    cut_chars = truncate_to_tokens("x" * 400, 10)
    assert set(cut_chars) == {"x"} and approx_tokens(cut_chars) == 10


def test_prompts_render_both_languages_and_hash() -> None:
    t = load_templates()
    assert set(t.hashes) >= {"query_sim.en", "query_sim.zh", "response_sim.zh", "intro.en", "evidence.zh"}
    p = Prompts(t, profile_tokens=200, max_claims=2)
    a = _profile(
        "Li Bai",
        description="Tang dynasty poet.",
        aliases=["Li Po"],
        trans_claims=[["occupation", "poet"], ["a", "b"], ["c", "d"]],
        wiki=WikiArticle(content="Li Bai wrote poems."),
    )
    b = _profile("Alice", description="girl in Wonderland")
    q = p.query(a, b, 3)[0]["content"]
    assert "[Character A]\nName: Li Bai\n" in q and "[Character B]\nName: Alice\n" in q
    assert "- occupation: poet" in q and "- c: d" not in q  # max_claims
    assert q.rstrip().endswith('[{"question": "..."}, {"question": "..."}, {"question": "..."}]')
    r = p.response(a, "What did you drink?")[0]["content"]
    assert "Your name: Li Bai" in r and "Question: What did you drink?" in r and "[Character" not in r
    assert p.intro(a) == "You are Li Bai, Tang dynasty poet."
    zh = _profile("李白", "zh", description="唐代诗人。")
    assert p.intro(zh) == "你是李白，唐代诗人。"
    assert p.intro(_profile("X")) == "You are X."
    zq = p.query(zh, _profile("福尔摩斯", "zh"), 2)[0]["content"]
    assert "[角色A]\n名字：李白\n" in zq and "请用中文提问" in zq
    assert prompt_kind(q) == "query" and prompt_kind(r) == "response" and prompt_kind(zq) == "query"
    assert prompt_kind(p.evidence(a, "Q?", "A.")[0]["content"]) == "evidence"


def test_custom_template_dir_must_be_complete(tmp_path: Path) -> None:
    (tmp_path / "query_sim.en.jinja").write_text("Q {{ a.label }}", encoding="utf-8")
    with pytest.raises(ConfigError, match="missing"):
        load_templates(tmp_path)


def test_a_template_with_a_syntax_error_is_refused_when_loaded(tmp_path: Path) -> None:
    from ditto_train.generate.prompts import TEMPLATE_DIR

    for src in TEMPLATE_DIR.glob("*.jinja"):
        (tmp_path / src.name).write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "response_sim.zh.jinja").write_text("{% if a %}unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"response_sim\.zh\.jinja"):
        load_templates(tmp_path)


def test_scripted_supervisor_replies() -> None:
    t = Prompts(load_templates())
    q = t.query(_profile("Ann"), _profile("Bob"), 3)
    samples = scripted_reply({"messages": q, "n": 3})
    assert isinstance(samples, list) and [parse_queries(s).ok for s in samples] == [False, True, True]
    assert "Ann" in parse_queries(samples[1]).questions[0]
    reply = scripted_reply({"messages": t.response(_profile("Ann"), "Hi?"), "n": 1})
    assert isinstance(reply, str) and reply.startswith("(Ann smiles)")


def _kb(tmp_path: Path, n: int, lang: str = "en") -> Path:
    path = tmp_path / "kb.jsonl"
    path.write_text("".join(_profile(f"R{i}", lang).to_json() + "\n" for i in range(n)), encoding="utf-8")
    return path


def test_index_draws_others_reproducibly(tmp_path: Path) -> None:
    idx = KnowledgeIndex(_kb(tmp_path, 20))
    e = idx.pools["en"][3]
    first = idx.draw_others(e, role_rng(1, "x", e.id), 3)
    assert first == idx.draw_others(e, role_rng(1, "x", e.id), 3)
    assert len({x.id for x in first}) == 3 and e.id not in {x.id for x in first}
    assert idx.load(first[0]).label == first[0].label
    small = KnowledgeIndex(_kb(tmp_path, 2))
    assert [x.id for x in small.draw_others(small.pools["en"][0], random.Random(0), 3)] == ["R1"]


def test_index_rejects_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text(_profile("A").to_json() + "\n" + _profile("A").to_json() + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="kb.jsonl:2: role A"):
        KnowledgeIndex(path)


def test_holdout_is_stable_and_roughly_proportional() -> None:
    ids = [f"Q{i}" for i in range(4000)]
    held = [i for i in ids if in_holdout(i, 0.025, None)]
    assert 60 <= len(held) <= 140
    assert held == [i for i in ids if in_holdout(i, 0.025, None)]
    assert in_holdout("Q1", 0.0, frozenset({"Q1"})) and not in_holdout("Q2", 1.0, frozenset({"Q1"}))


def test_gen_kwargs_defaults_and_request_mapping() -> None:
    gen = parse_gen_kwargs(None)
    assert gen == {
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 0.8,
        "repetition_penalty": 1.1,
        "max_gen_toks": 2048,
    }
    local = sampling_params("local-chat-completions", gen).payload_fields()
    assert local == {"temperature": 1.0, "max_tokens": 2048, "top_p": 0.8, "repetition_penalty": 1.1}
    openai = sampling_params("openai-chat-completions", gen).payload_fields()
    assert "repetition_penalty" not in openai  # OpenAI's API rejects unknown fields
    greedy = sampling_params("local-chat-completions", parse_gen_kwargs("do_sample=False,max_new_tokens=64"))
    assert greedy.temperature == 0.0 and greedy.max_tokens == 64 and greedy.top_p is None
    with pytest.raises(ConfigError):
        parse_gen_kwargs("max_gen_toks=0")


def test_candidates_and_evidence_helpers() -> None:
    p = _profile(
        "Edward III",
        summary="Edward III (1312–1377) was King of England. He won at Crécy.",
        trans_claims=[["date of birth", "1312-11-13"]],
        wiki=WikiArticle(content="Edward III was King of England.\nHe won the battle at Crécy in 1346."),
    )
    assert candidate_text(p) == "[Edward III] Edward III (1312–1377) was King of England."
    assert first_sentence("李白是唐代诗人。他爱喝酒。") == "李白是唐代诗人。"
    assert first_sentence("Dr. Watson lives in London. He is a doctor.") == "Dr. Watson lives in London."
    assert (
        first_sentence("J. R. R. Tolkien (1892–1973) was a writer. He taught.")
        == "J. R. R. Tolkien (1892–1973) was a writer."
    )
    assert first_sentence("No full stop") == "No full stop"
    ev = overlap_evidence(p, "Tell me about the battle at Crécy.", "We won it.", 500)
    assert ev[0] == "- He won the battle at Crécy in 1346."
    assert overlap_evidence(p, "Do you like smartphones?", "No idea.", 500)[0].startswith("- Edward III")


def test_num_concurrent_in_supervisor_args_sets_the_concurrency() -> None:
    from ditto_train.generate.supervisor import ApiSupervisor, make_supervisor

    def build(args: str, concurrency: int = 32) -> ApiSupervisor:
        sup = make_supervisor(
            "local-chat-completions", f"model=m,base_url=http://127.0.0.1:1/v1{args}", {"max_gen_toks": 8},
            concurrency=concurrency, seed=0, cache=None,
        )
        assert isinstance(sup, ApiSupervisor)
        return sup

    assert build("").client.concurrency == 32
    assert build(",num_concurrent=4").client.concurrency == 4
    with pytest.raises(ConfigError, match="num_concurrent"):
        build(",num_concurrent=zero")


def test_local_supervisor_is_not_loaded_for_a_locked_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A second ``generate`` on a locked --out fails (exit 2, one line) before the supervisor loads."""
    import harness.backends
    from ditto_train.generate.cli import main
    from harness.dirlock import DirLock
    from tests.fixtures.knowledge.e2e import build_fixture_kb

    kb = build_fixture_kb(tmp_path / "kb")
    loads: list[str] = []

    def no_load(name: str, *a: object, **k: object) -> object:
        loads.append(name)
        raise AssertionError("the supervisor was loaded before the directory lock was taken")

    monkeypatch.setattr(harness.backends, "load_backend", no_load)
    out = tmp_path / "out"
    (tmp_path / "model").mkdir()
    argv = ["--supervisor", "hf", "--supervisor_args", f"pretrained={tmp_path / 'model'},device=cpu",
            "--knowledge", str(kb), "--out", str(out), "--holdout_rate", "0"]
    capfd.readouterr()
    with DirLock(out, "generate"):
        rc = main(argv)
    err = [x for x in capfd.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and loads == []
    assert len(err) == 1 and str(out) in err[0] and "in use" in err[0], err
    assert not (out / "stage.json").exists()


def test_local_supervisor_bad_path_is_one_line_and_writes_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A local supervisor's missing directory is refused (exit 2, one line) before --out is created."""
    from ditto_train.generate.cli import main
    from tests.fixtures.knowledge.e2e import build_fixture_kb

    kb = build_fixture_kb(tmp_path / "kb")
    out = tmp_path / "out"
    capfd.readouterr()
    rc = main(["--supervisor", "hf", "--supervisor_args", f"pretrained={tmp_path / 'nope'},device=cpu",
               "--knowledge", str(kb), "--out", str(out), "--holdout_rate", "0"])
    err = [x for x in capfd.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1, err
    assert "--supervisor_args: pretrained=" in err[0] and "no such directory" in err[0]
    assert not out.exists()
