"""Character knowledge collection: Wikidata + Wikipedia → a knowledge-base JSONL (one profile per line)."""

from ditto_train.knowledge.schema import LANGS, Lang, RoleProfile, WikiArticle, iter_kb

__all__ = ["LANGS", "Lang", "RoleProfile", "WikiArticle", "iter_kb"]
