"""Shared reporting: grid report helpers, figures, seed comparisons with statistics."""
