"""SFT config and input checks: precedence, typed YAML/flags, and bad inputs rejected before training.

These never load a model: every error here must surface before torch is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ditto_train.sft.cli import main, parse_argv
from ditto_train.sft.config import SFTRunConfig, resolve_config
from ditto_train.sft.data import load_conversations
from harness.errors import ConfigError, DataError

GOOD_ROW = {
    "messages": [
        {"role": "system", "content": "You are Li Bai."},
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am Li Bai, a poet."},
    ]
}
REQUIRED: dict[str, Any] = {"model": "some/model", "data": "d.jsonl", "output_dir": "out"}


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def test_paper_defaults() -> None:
    cfg = SFTRunConfig(**REQUIRED)
    assert (cfg.max_length, cfg.max_steps, cfg.num_train_epochs, cfg.global_batch_size) == (
        8192,
        300,
        5.0,
        128,
    )
    assert (cfg.learning_rate, cfg.min_lr, cfg.warmup_ratio) == (2e-6, 2e-7, 0.1)
    assert cfg.lr_scheduler_type == "cosine_with_min_lr" and cfg.packing is False and cfg.mode == "full"
    # 300 steps at batch 128 over the paper's 7,086 sessions is ~5.4 epochs: the two paper statements agree.
    assert cfg.accumulation_for(world_size=8) == 16
    assert cfg.planned_steps(rows=7086, world_size=8) == 300
    by_epochs = SFTRunConfig(**REQUIRED, max_steps=0)
    assert by_epochs.planned_steps(rows=7086, world_size=8) == 5 * 56  # ceil(7086 / 128) = 56 steps per epoch


def test_precedence_defaults_yaml_flags(tmp_path: Path) -> None:
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text(
        "model: m\ndata: d.jsonl\noutput_dir: o\nmax_steps: 10\nlearning_rate: 1e-4\n"
        "lora_target_modules: [q_proj]\n",
        encoding="utf-8",
    )
    config_path, dry_run, want_help, flags = parse_argv(
        ["--config", str(yaml_path), "--learning_rate", "5e-5", "--packing", "--bf16=auto", "--dry_run"]
    )
    assert (config_path, dry_run, want_help) == (str(yaml_path), True, False)
    cfg = resolve_config(config_path, flags)
    assert cfg.learning_rate == 5e-5  # flag beats YAML
    assert cfg.max_steps == 10  # YAML beats default
    assert cfg.warmup_ratio == 0.1 and cfg.max_length == 8192  # defaults where neither speaks
    assert cfg.lora_target_modules == ["q_proj"] and cfg.packing is True and cfg.bf16 is None
    # YAML 1.1 reads "1e-4" (no dot) as a string; the config still types it as a float.
    assert isinstance(resolve_config(yaml_path, {}).learning_rate, float)
    _, _, _, flags = parse_argv(
        ["--lora_target_modules", "q_proj,v_proj", "--gradient_accumulation_steps", "null"]
    )
    assert flags == {"lora_target_modules": ["q_proj", "v_proj"], "gradient_accumulation_steps": None}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"model": None}, "missing required key 'model'"),
        ({"min_lr": 1e-3}, "min_lr"),
        ({"global_batch_size": 100, "per_device_train_batch_size": 3}, "not a multiple"),
        ({"max_steps": 0, "num_train_epochs": 0}, "nothing would train"),
        ({"resume": True}, "save_strategy"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ],
)
def test_invalid_combinations(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        SFTRunConfig(**{**REQUIRED, **kwargs})  # type: ignore[arg-type]


def test_accumulation_checks_world_size() -> None:
    cfg = SFTRunConfig(**REQUIRED, per_device_train_batch_size=4)
    assert cfg.accumulation_for(1) == 32 and cfg.accumulation_for(32) == 1
    with pytest.raises(ConfigError, match="not divisible"):
        cfg.accumulation_for(3)
    with pytest.raises(ConfigError, match="disagrees"):
        SFTRunConfig(**REQUIRED, gradient_accumulation_steps=2).accumulation_for(1)
    assert (
        SFTRunConfig(**REQUIRED, global_batch_size=None, gradient_accumulation_steps=2).accumulation_for(4)
        == 2
    )


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([GOOD_ROW, {"conversation": []}], ":2: missing 'messages'"),
        ([GOOD_ROW, {"messages": GOOD_ROW["messages"][:2]}], ":2: conversation has no assistant turn"),
        ([{"messages": [{"role": "bot", "content": "x"}]}], ":1: message 1 has role 'bot'"),
        ([{"messages": [{"role": "user", "content": ["x"]}]}], "needs string 'content'"),
        ([{"messages": [GOOD_ROW["messages"][1], GOOD_ROW["messages"][0]]}], "only the first message"),
        ([{"messages": [GOOD_ROW["messages"][1], {"role": "assistant", "content": "  "}]}], "empty content"),
    ],
)
def test_data_errors_name_file_and_line(tmp_path: Path, rows: list[object], needle: str) -> None:
    path = _jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=needle):
        load_conversations(path)


def test_data_error_counts_other_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"messages": []}\nnot json\n\n' + json.dumps(GOOD_ROW) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_conversations(path)
    assert str(info.value) == f"{path}:1: 'messages' must be a non-empty list (and 1 more bad line(s))"


def test_good_data_summary(tmp_path: Path) -> None:
    rows = [GOOD_ROW, {**GOOD_ROW, "id": 7, "character": "Li Bai"}]
    conversations, summary = load_conversations(_jsonl(tmp_path / "d.jsonl", rows))
    assert (summary.rows, summary.messages, summary.assistant_turns) == (2, 6, 2)
    assert conversations[1] == GOOD_ROW["messages"] and len(summary.sha256) == 64


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing_messages", ":1: missing 'messages'"),
        ("no_assistant", ":1: conversation has no assistant turn"),
        ("unknown_flag", "unknown option --learning_rat (did you mean: --learning_rate?)"),
        ("unknown_yaml_key", "unknown config key 'max_step' (did you mean: max_steps"),
        ("bad_yaml_type", "key 'max_steps' expects an integer, got 'lots'"),
        ("bad_flag_type", "key 'packing' expects true or false, got 'maybe'"),
        ("bad_yaml_syntax", "c.yaml:2"),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, needle: str
) -> None:
    out_dir = tmp_path / "out"
    data = _jsonl(tmp_path / "d.jsonl", [GOOD_ROW])
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text(
        f"model: {tmp_path / 'no-model'}\ndata: {data}\noutput_dir: {out_dir}\n", encoding="utf-8"
    )
    extra: list[str] = []
    if case == "missing_messages":
        _jsonl(data, [{"turns": GOOD_ROW["messages"]}])
    elif case == "no_assistant":
        _jsonl(data, [{"messages": GOOD_ROW["messages"][:2]}])
    elif case == "unknown_flag":
        extra = ["--learning_rat", "1e-5"]
    elif case == "unknown_yaml_key":
        yaml_path.write_text(yaml_path.read_text() + "max_step: 3\n", encoding="utf-8")
    elif case == "bad_yaml_type":
        yaml_path.write_text(yaml_path.read_text() + "max_steps: lots\n", encoding="utf-8")
    elif case == "bad_flag_type":
        extra = ["--packing", "maybe"]
    elif case == "bad_yaml_syntax":
        yaml_path.write_text("model: x\n  bad: [indent\n", encoding="utf-8")
    code, err = _run(["--config", str(yaml_path), *extra], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("ditto-bench train: error: "), err
    assert needle in err[0]
    assert not out_dir.exists()


def test_cli_refuses_finished_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "training_record.json").write_text("{}", encoding="utf-8")
    data = _jsonl(tmp_path / "d.jsonl", [GOOD_ROW])
    code, err = _run(["--model", "m", "--data", str(data), "--output_dir", str(out_dir)], capsys)
    # a training record without a stage record (an older ditto-bench): refused, named, nothing deleted
    assert code == 2 and "already holds output of an earlier ditto-bench train" in err[0]
    assert "training_record.json" in err[0] and (out_dir / "training_record.json").exists()
    (out_dir / "training_record.json").unlink()
    (out_dir / "stray.txt").write_text("x", encoding="utf-8")
    code, err = _run(["--model", "m", "--data", str(data), "--output_dir", str(out_dir)], capsys)
    assert code == 2 and "is not empty" in err[0]


def test_cli_help_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for key in ("--max_length", "--min_lr", "--lora_r", "--chat_template", "--global_batch_size"):
        assert key in text


CONFIG_DIR = Path(__file__).resolve().parents[1] / "ditto_train" / "configs"


def test_shipped_sft_configs_resolve() -> None:
    paper = resolve_config(CONFIG_DIR / "sft_paper.yaml", dict(REQUIRED))
    defaults = SFTRunConfig(**REQUIRED)
    for key in (
        "max_length",
        "max_steps",
        "num_train_epochs",
        "global_batch_size",
        "learning_rate",
        "min_lr",
        "warmup_ratio",
        "lr_scheduler_type",
        "packing",
        "mode",
        "bf16",
    ):
        assert getattr(paper, key) == getattr(defaults, key), key
    tiny = resolve_config(CONFIG_DIR / "sft_tiny_cpu.yaml", dict(REQUIRED))
    assert tiny.max_steps == 30 and tiny.bf16 is False and tiny.save_strategy == "no"


@pytest.mark.slow  # accelerate's loader imports torch
def test_shipped_accelerate_configs_load() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    zero3 = load_config_from_file(str(CONFIG_DIR / "deepspeed_zero3.yaml"))
    assert zero3.distributed_type == "DEEPSPEED"
    assert (
        zero3.deepspeed_config["zero_stage"] == 3 and zero3.deepspeed_config["zero3_save_16bit_model"] is True
    )
    fsdp = load_config_from_file(str(CONFIG_DIR / "fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP"
    assert (
        fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    )  # save_model writes a loadable folder
