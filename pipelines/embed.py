"""DVC stage `embed`: vocabulary + GloVe -> data/embeddings/<dataset>/ (matrix.npy + coverage.json)."""

from rnnlab.config import cli
from rnnlab.data.prepare import embed


def run(cfg):
    cov = embed(cfg)
    print(f"embed: {cov['vocab_found']}/{cov['vocab_size']} words in {cov['embeddings']} "
          f"({cov['train_token_coverage']:.1%} of training tokens), {cov['seconds']:.2f}s")


if __name__ == "__main__":
    cli(run, "embed")
