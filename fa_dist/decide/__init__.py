"""Decisions: pure functions from facts to a decision with its reasons (checks, recipes, plans, resolver)."""
