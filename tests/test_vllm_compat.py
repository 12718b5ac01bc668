"""The vLLM loader shims, without vLLM installed (the real path runs in tests/test_vllm_cpu.py)."""

from __future__ import annotations

from importlib import metadata

import pytest

from harness.backends.vllm_compat import VLLM_BATCH, _version_with_alias, vllm_model_args


def _real(name: str) -> str:
    versions = {"vllm-cpu": "0.32.0", "torch": "2.13.0+cpu"}
    if name not in versions:
        raise metadata.PackageNotFoundError(name)
    return versions[name]


def test_vllm_version_is_answered_by_the_cpu_build() -> None:
    version = _version_with_alias(_real, "vllm-cpu")
    assert version("vllm") == "0.32.0"
    assert version("torch") == "2.13.0+cpu"  # every other name is the real lookup
    with pytest.raises(metadata.PackageNotFoundError):
        version("transformers")


def test_vllm_itself_wins_over_the_alias() -> None:
    version = _version_with_alias(lambda n: {"vllm": "0.40.0", "vllm-cpu": "0.32.0"}[n], "vllm-cpu")
    assert version("vllm") == "0.40.0"


@pytest.mark.parametrize(("given", "expected"), [(None, VLLM_BATCH), ("auto", VLLM_BATCH),
                                                 ("auto:4", VLLM_BATCH), (16, 16), ("8", "8")])
def test_vllm_batch_size_never_auto(given: object, expected: object) -> None:
    args: dict[str, object] = {"pretrained": "m"}
    if given is not None:
        args["batch_size"] = given
    vllm_model_args(args)
    assert args["batch_size"] == expected
