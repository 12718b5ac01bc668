"""Settings of one ``ditto-bench generate`` run (every open choice of the paper is a field here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ditto_train.knowledge.schema import LANGS, Lang

Split = Literal["train", "test"]
EvidenceMode = Literal["supervisor", "overlap"]

# Per-session filter counters. Every key is always present in every record, so the JSONL has one schema
# (Arrow/`datasets` cannot load rows whose nested keys differ).
FILTER_KEYS = (
    "malformed_query_samples",  # query-simulation samples that were not a JSON list of {"question": str}
    "query_sim_failed",  # query prompts (of 2 per session) with no well-formed sample at all
    "empty_query",
    "duplicate_query",
    "overlong_query",
    "surplus_query",  # well-formed questions beyond --queries_per_type (not a quality problem)
    "empty_response",
    "breaks_character",
    "overlong_response",
    "evidence_fallback",  # test split: supervisor evidence had no bullet, the overlap heuristic was used
)
USAGE_KEYS = ("calls", "cached_calls", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate and how; see ``docs/generator.md`` for the reasoning behind each default."""

    knowledge: Path
    out: Path
    split: Split = "train"
    langs: tuple[Lang, ...] = LANGS
    limit: int | None = None
    """First N eligible roles per language (in knowledge-base order); finished ones count."""
    seed: int = 1234
    concurrency: int = 32
    n_query_samples: int = 3
    """App. C: query simulation is sampled three times and one well-formed sample is kept."""
    queries_per_type: int = 3
    """App. B.1 asks for 3 questions: at most this many role-specific and as many contrastive ones."""
    max_query_chars: int = 400
    max_reply_chars: int = 4000
    profile_tokens: int = 3000
    """Article budget per prompt (the query prompt splits it between A and B): fits App. C's 8,192 context."""
    max_claims: int = 40
    holdout_rate: float = 0.025
    """Share of roles (salted hash of the id) held out for the test split; ~100 of 3,902 as in the paper."""
    holdout_ids: frozenset[str] | None = None
    n_distractors: int = 3
    evidence: EvidenceMode = "supervisor"
    seed_model: str | None = None
    """The model that will be fine-tuned on this data, if known: marks self-alignment vs cross-supervision."""

    def spec(self) -> dict[str, Any]:
        """The fields that change the generated data (for the run fingerprint); selection fields excluded."""
        d = asdict(self)
        for key in ("knowledge", "out", "langs", "limit", "concurrency", "seed_model"):
            d.pop(key)
        d["holdout_ids"] = sorted(self.holdout_ids) if self.holdout_ids is not None else None
        return d
