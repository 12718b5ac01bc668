"""Pick the chat template SFT trains with, so that loss falls on assistant replies only.

TRL's `assistant_only_loss` needs `{% generation %}` markers around the assistant text. Resolution of
`chat_template`:

* ``auto``: the model's own template when it already has markers; else TRL's patched training version of
  it (TRL knows Qwen 2.5/3, Llama 3, Gemma, Phi-3, ...); else our shipped ChatML
  (`templates/chatml_train.jinja`), which is the format the paper trained with.
* ``model``: the model's own or TRL-patched template; an error if neither works.
* ``chatml``: the shipped ChatML.
* a path to a ``.jinja`` file that has the markers.

The chosen template is set on the tokenizer, so it is also the one saved next to the trained model and used
when the harness evaluates it (the markers do not change rendering).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SHIPPED_CHATML = Path(__file__).resolve().parents[1] / "templates" / "chatml_train.jinja"
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
CHATML_EOS = "<|im_end|>"

TemplateSource = Literal["model", "trl_patched", "shipped_chatml", "file"]


@dataclass(frozen=True)
class TemplateChoice:
    """The training chat template and why it was chosen."""

    source: TemplateSource
    text: str
    reason: str
    path: str | None = None
    # Set when the shipped ChatML replaces a template whose end-of-turn token is not <|im_end|>.
    eos_token: str | None = None
    # ChatML tokens the tokenizer lacks; they are added as special tokens (full fine-tune only).
    missing_tokens: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sha256(self) -> str:
        """Checksum of the template text (stored in the training record)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def has_generation_markers(template: str) -> bool:
    """True when the template text has a `{% generation %}` block (any whitespace-control variant)."""
    from trl.chat_template_utils import has_generation_markers as trl_has_markers

    return bool(trl_has_markers(template))


def _own_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    template = tokenizer.chat_template
    if isinstance(template, dict):  # named variants: "default" is the chat one
        template = template.get("default")
    return template if isinstance(template, str) and template.strip() else None


def _model_or_patched(tokenizer: PreTrainedTokenizerBase) -> tuple[TemplateChoice | None, str]:
    """The model's template if trainable as is, else TRL's patched version; (None, why not) otherwise."""
    from jinja2 import TemplateError
    from trl.chat_template_utils import get_training_chat_template

    own = _own_template(tokenizer)
    if own is None:
        return None, "the tokenizer has no chat template"
    try:
        patched = get_training_chat_template(tokenizer)
    except (ValueError, TypeError, TemplateError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"the model's template has no generation markers and TRL cannot patch it ({first})"
    if patched is None:
        return TemplateChoice("model", own, "the model's template has {% generation %} markers"), ""
    return TemplateChoice("trl_patched", patched, "TRL's training version of the model's template"), ""


def _shipped(tokenizer: PreTrainedTokenizerBase, reason: str) -> TemplateChoice:
    vocab = tokenizer.get_vocab()
    missing = tuple(t for t in CHATML_TOKENS if t not in vocab)
    eos = CHATML_EOS if tokenizer.eos_token != CHATML_EOS else None
    text = SHIPPED_CHATML.read_text(encoding="utf-8")
    return TemplateChoice("shipped_chatml", text, reason, str(SHIPPED_CHATML), eos, missing)


def resolve_chat_template(tokenizer: PreTrainedTokenizerBase, spec: str) -> TemplateChoice:
    """Decide the training template for `tokenizer` from the config value `spec` (see module docstring)."""
    if spec == "chatml":
        return _shipped(tokenizer, "chat_template=chatml")
    if spec in ("auto", "model"):
        choice, why_not = _model_or_patched(tokenizer)
        if choice is not None:
            return choice
        if spec == "model":
            raise ConfigError(f"chat_template=model: {why_not}; use chat_template=chatml or a .jinja path")
        return _shipped(tokenizer, f"auto: {why_not}")
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"chat_template {spec!r} is neither auto/model/chatml nor an existing .jinja file")
    text = path.read_text(encoding="utf-8")
    if not has_generation_markers(text):
        raise ConfigError(
            f"chat template {path} has no {{% generation %}} ... {{% endgeneration %}} block around the "
            "assistant reply, so assistant-only loss cannot be computed; add one (see "
            "ditto_train/templates/chatml_train.jinja)"
        )
    return TemplateChoice("file", text, "chat_template path given in the config", str(path))


def apply_template(tokenizer: PreTrainedTokenizerBase, choice: TemplateChoice) -> list[str]:
    """Set the chosen template on `tokenizer`, adding any missing ChatML tokens; return the tokens added."""
    added: list[str] = []
    if choice.missing_tokens:
        tokenizer.add_tokens(list(choice.missing_tokens), special_tokens=True)
        added = list(choice.missing_tokens)
    tokenizer.chat_template = choice.text
    return added


def stop_token_trained(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the template puts the end-of-turn token inside the loss mask (else the model may not stop)."""
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    trained = bool(is_chat_template_stop_token_trained(tokenizer))
    if not trained:
        log.warning(
            "the chat template leaves the end-of-turn token out of the loss; the model may not learn to stop"
        )
    return trained
