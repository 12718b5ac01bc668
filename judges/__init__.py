"""LLM-judge prompt templates, parsers and reducers."""
