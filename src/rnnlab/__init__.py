"""rnnlab: reproducible experiments with recurrent NLP models."""

__version__ = "0.1.0"
