"""The one normalisation rule for character names: dataset labels, consistency candidates, judge verdicts.

``normalize_name(s)`` applies, in this order:

1. Unicode NFKC (full-width ``Ｍａｒｉｅ`` becomes ``Marie``, a no-break space becomes a space, CJK
   compatibility ideographs become the unified ones);
2. removal of the zero-width characters U+200B–U+200D, U+2060 and U+FEFF;
3. strip, and every internal run of whitespace collapsed to one ASCII space.

Case is kept: the comparison stays case-sensitive, as the released scorer's is. Validation
(:func:`tasks.wikiroleeval.data.is_gold_candidate`), the consistency parser
(:func:`judges.parsers.parse_consistency`) and the consistency reducer
(:func:`judges.reducers.reduce_consistency`) all go through this function, so a label written
``"Marie Curie "`` in the data matches a judge's ``[Marie Curie]``. The ``official`` block of
``results.json`` deliberately does not (the released code compares the raw strings).
"""

from __future__ import annotations

import re
import unicodedata

_ZERO_WIDTH_RE = re.compile("[\u200b-\u200d\u2060\ufeff]")


def normalize_name(text: str) -> str:
    """NFKC, zero-width characters removed, stripped, internal whitespace collapsed (case kept)."""
    return " ".join(_ZERO_WIDTH_RE.sub("", unicodedata.normalize("NFKC", text)).split())


