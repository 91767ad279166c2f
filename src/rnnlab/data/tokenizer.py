"""Word-level tokenisation with Hugging Face `tokenizers`, trained on the train split only."""

from __future__ import annotations

from typing import Iterable

from omegaconf import DictConfig
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from rnnlab.errors import ConfigError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
NORMALIZATIONS = {"nfc": normalizers.NFC, "nfkc": normalizers.NFKC,
                  "nfd": normalizers.NFD, "nfkd": normalizers.NFKD}


def build_tokenizer(tok_cfg: DictConfig, train_texts: Iterable[str]) -> Tokenizer:
    """Train a word-level tokenizer: `<pad>`=0, `<unk>`=1, then words by frequency."""
    if tok_cfg.kind != "word":
        raise ConfigError(f"tokenizer.kind={tok_cfg.kind!r} is not supported; allowed: word")
    steps = []
    norm = tok_cfg.unicode_normalization
    if norm is not None:
        if norm not in NORMALIZATIONS:
            raise ConfigError(
                f"tokenizer.unicode_normalization={norm!r}; allowed: {', '.join(NORMALIZATIONS)}, null"
            )
        steps.append(NORMALIZATIONS[norm]())
    if tok_cfg.lowercase:
        steps.append(normalizers.Lowercase())
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Whitespace() if tok_cfg.split_punctuation else pre_tokenizers.WhitespaceSplit()
    )
    trainer = trainers.WordLevelTrainer(
        vocab_size=int(tok_cfg.max_vocab_size),
        min_frequency=int(tok_cfg.min_frequency),
        special_tokens=[PAD, UNK],
        show_progress=False,
    )
    tokenizer.train_from_iterator(train_texts, trainer=trainer)
    assert tokenizer.token_to_id(PAD) == PAD_ID and tokenizer.token_to_id(UNK) == UNK_ID
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Batch-encode texts to ids, truncated to `max_length`; an empty encoding becomes [<unk>]."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [enc.ids[:max_length] or [UNK_ID] for enc in encodings]
