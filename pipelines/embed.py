"""DVC stage `<family>_embed`: vocabulary + GloVe -> data/embeddings/<dataset>/ (matrix.npy + coverage.json)."""

from rnnlab.config import cli
from rnnlab.stages import embed

if __name__ == "__main__":
    cli(embed, "embed")
