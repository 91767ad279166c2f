"""Shared building blocks of the models: recurrent encoders, pooling, attention."""
