"""Ditto dialogue simulation: knowledge base + supervisor model → role-play sessions (train) or test items."""
