"""Leaderboard tables built from run records."""
