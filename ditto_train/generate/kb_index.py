"""A light, seekable index of the knowledge base, so generation never holds all profiles in memory.

Generation needs random access to *other* roles (the partner B of the query prompt, the test set's consistency
distractors), so a single streaming pass is not enough. We keep, per record, only ``(id, lang, label, line,
byte offset)`` — well under a kilobyte per record, against tens of kilobytes for a profile with its article —
and read a full profile with one ``seek`` + ``readline`` when a role is being simulated. Reservoir-style
partner picks would avoid even the index, but they need one more pass over the file per draw and cannot
exclude the role itself cheaply; the index costs a few megabytes at the paper's scale (7,086 records).

Partners and distractors are drawn from records of the same language: the prompt is written in that language
and the zh pool (3,184 roles in the paper) is smaller than the en pool.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ditto_train.knowledge.schema import LANGS, Lang, RoleProfile, iter_kb, read_profile_at
from harness.errors import DataError


@dataclass(frozen=True)
class Entry:
    """Where one record lives in the knowledge-base file."""

    id: str
    lang: Lang
    label: str
    line: int
    offset: int
    pos: int
    """Position in its language's pool (for O(1) exclusion when drawing partners)."""


class KnowledgeIndex:
    """Per-language pools of :class:`Entry`, plus seek-based profile loading."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.pools: dict[str, list[Entry]] = {lang: [] for lang in LANGS}
        seen: dict[tuple[str, str], int] = {}
        for line, offset, prof in iter_kb(self.path):
            key = (prof.id, prof.lang)
            if key in seen:
                raise DataError(
                    f"{self.path}:{line}: role {prof.id} ({prof.lang}) already given at line {seen[key]}"
                )
            seen[key] = line
            pool = self.pools[prof.lang]
            pool.append(Entry(prof.id, prof.lang, prof.label, line, offset, len(pool)))
        if not any(self.pools.values()):
            raise DataError(f"{self.path}: the knowledge base has no records")
        self._fh: BinaryIO | None = None

    def __len__(self) -> int:
        return sum(len(p) for p in self.pools.values())

    def entries(self, langs: tuple[str, ...]) -> Iterator[Entry]:
        """Entries of ``langs``, language by language, in file order."""
        for lang in langs:
            yield from self.pools.get(lang, [])

    def load(self, entry: Entry) -> RoleProfile:
        """The full profile of ``entry`` (one seek and one line read)."""
        if self._fh is None:
            self._fh = self.path.open("rb")
        return read_profile_at(self._fh, entry.offset, f"{self.path}:{entry.line}")

    def draw_others(self, entry: Entry, rng: random.Random, k: int) -> list[Entry]:
        """``k`` distinct entries of ``entry``'s language with other ids and labels, drawn with ``rng``."""
        pool = self.pools[entry.lang]
        out: list[Entry] = []
        labels = {entry.label}
        ids = {entry.id}
        # Rejection sampling: cheap because the pool is large compared with k; bounded for tiny pools.
        for _ in range(50 * k + 50):
            if len(out) >= k:
                break
            cand = pool[rng.randrange(len(pool))]
            if cand.id in ids or cand.label in labels:
                continue
            out.append(cand)
            ids.add(cand.id)
            labels.add(cand.label)
        if len(out) < k:
            for cand in pool:  # small pools: take the rest deterministically
                if len(out) >= k:
                    break
                if cand.id not in ids and cand.label not in labels:
                    out.append(cand)
                    ids.add(cand.id)
                    labels.add(cand.label)
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def role_rng(seed: int, *parts: str) -> random.Random:
    """A generator seeded by ``seed`` and the role: independent of order, concurrency and resumption."""
    return random.Random("|".join((str(seed), *parts)))


def in_holdout(role_id: str, rate: float, ids: frozenset[str] | None) -> bool:
    """Whether a role is held out for the test split (an explicit id list wins over the hash rate).

    The hash uses a fixed salt, not ``--seed``, so train and test runs with different seeds stay disjoint.
    """
    if ids is not None:
        return role_id in ids
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"ditto-bench-holdout|{role_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate
