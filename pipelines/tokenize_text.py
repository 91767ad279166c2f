"""DVC stage `<family>_tokenize`: data/raw/<dataset>/ -> data/tokenized/<dataset>/ (tokenizer(s) + ids)."""

from rnnlab.config import cli
from rnnlab.stages import tokenize

if __name__ == "__main__":
    cli(tokenize, "tokenize")
