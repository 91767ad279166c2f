"""Tokenisation with Hugging Face `tokenizers`, trained on the train split only.

kind=word: word level (punctuation split off, optional lowercasing); decoded by `detokenize`.
kind=bpe: byte-pair encoding over Metaspace pieces ("▁" marks a word start), decoded exactly.
Special tokens: `<pad>`=0, `<unk>`=1 always; sequence targets add `<bos>`=2, `<eos>`=3.
"""

from __future__ import annotations

import re
from typing import Iterable

from omegaconf import DictConfig
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from rnnlab.errors import ConfigError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
KINDS = ("word", "bpe")
NORMALIZATIONS = {"nfc": normalizers.NFC, "nfkc": normalizers.NFKC,
                  "nfd": normalizers.NFD, "nfkd": normalizers.NFKD}


def build_tokenizer(tok_cfg: DictConfig, train_texts: Iterable[str], sequence_specials: bool = False) -> Tokenizer:
    """Train a tokenizer: `<pad>`=0, `<unk>`=1 (then `<bos>`=2, `<eos>`=3 when `sequence_specials`),
    then tokens by frequency (word) or merges (bpe)."""
    kind = tok_cfg.kind
    if kind not in KINDS:
        raise ConfigError(f"tokenizer.kind={kind!r} is not supported; allowed: {', '.join(KINDS)}")
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
    specials = [PAD, UNK, BOS, EOS] if sequence_specials else [PAD, UNK]
    common = dict(vocab_size=int(tok_cfg.max_vocab_size), min_frequency=int(tok_cfg.min_frequency),
                  special_tokens=specials, show_progress=False)
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = (
            pre_tokenizers.Whitespace() if tok_cfg.split_punctuation else pre_tokenizers.WhitespaceSplit()
        )
        trainer = trainers.WordLevelTrainer(**common)
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        # Pieces never cross a space; punctuation is learned by the merges (split_punctuation unused).
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(**common)
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.train_from_iterator(train_texts, trainer=trainer)
    for token, expected in zip(specials, range(len(specials))):
        assert tokenizer.token_to_id(token) == expected, (token, tokenizer.token_to_id(token))
    return tokenizer


_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}»…]|\.\.\.)")
_NO_SPACE_AFTER = re.compile(r"([¿¡(\[{«]) ")


def detokenize(tokenizer: Tokenizer, ids: list[int], replacements: dict[int, str] | None = None) -> str:
    """Text from ids without specials. BPE decodes exactly; word level joins words and re-attaches
    punctuation (no space before . , ! ? ; : and after ¿ ¡ and opening brackets). `replacements` maps
    positions in `ids` (of `<unk>` tokens) to the words written in their place."""
    replacements = replacements or {}
    if isinstance(tokenizer.decoder, decoders.Metaspace):
        if not replacements:
            return tokenizer.decode(ids, skip_special_tokens=True).strip()
        parts, run = [], []  # the pieces between replaced tokens decode as usual; a replacement is a word
        for pos, i in enumerate(ids):
            if pos in replacements:
                parts += [tokenizer.decode(run, skip_special_tokens=True), replacements[pos]]
                run = []
            else:
                run.append(i)
        parts.append(tokenizer.decode(run, skip_special_tokens=True))
        return " ".join(p.strip() for p in parts if p.strip())
    words = [replacements.get(pos, tokenizer.id_to_token(i)) for pos, i in enumerate(ids)
             if i > EOS_ID or i == UNK_ID]
    text = " ".join(w for w in words if w is not None)
    text = _NO_SPACE_BEFORE.sub(r"\1", text)
    text = _NO_SPACE_AFTER.sub(r"\1", text)
    return re.sub(r" ?' ?", "'", text)


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Batch-encode texts to ids, truncated to `max_length`; an empty encoding becomes [<unk>].
    `encode_batch_fast` skips the character offsets (unused here): same ids, about 1.4x the tokens/s on
    the short translation sentences (benchmarks/RESULTS.md, data_stages)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return [enc.ids[:max_length] or [UNK_ID] for enc in encodings]
