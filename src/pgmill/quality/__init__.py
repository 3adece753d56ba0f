"""Contracts turned into vectorized row checks."""
