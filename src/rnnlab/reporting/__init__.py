"""Comparison reports and plots."""
