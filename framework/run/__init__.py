"""Scenarios, their ops, and running them on machines (one run, or compare)."""
