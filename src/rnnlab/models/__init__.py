"""Recurrent encoders, pooling and task heads."""
