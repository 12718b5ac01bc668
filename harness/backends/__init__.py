"""Model-under-test backends, taken from lm-eval's model registry by lm-eval's names.

``load_backend("hf", "pretrained=DIR,device=cpu")`` returns a :class:`ChatBackend` that turns chat
histories into replies. The harness owns the conversation (history, system prompt, trimming, seeding);
lm-eval owns the model call.
"""

from harness.backends.base import ChatBackend, GenerationResult, parse_kv_args, redact_args
from harness.backends.lmeval import load_backend

__all__ = ["ChatBackend", "GenerationResult", "load_backend", "parse_kv_args", "redact_args"]
