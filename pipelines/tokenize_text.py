"""DVC stage `tokenize`: data/raw/<dataset>/ -> data/tokenized/<dataset>/ (tokenizer.json + ids)."""

from rnnlab.config import cli
from rnnlab.data.prepare import tokenize


def run(cfg):
    stats = tokenize(cfg)
    print(f"tokenize: vocabulary {stats['vocab_size']}, {stats['tokens_per_second']:,} tokens/s")


if __name__ == "__main__":
    cli(run, "tokenize")
