"""Corpus BLEU and chrF with sacreBLEU, against every reference of each source sentence."""

from __future__ import annotations


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout: stream k holds the k-th reference of every sentence (None when absent)."""
    depth = max(len(r) for r in references)
    return [[r[k] if k < len(r) else None for r in references] for k in range(depth)]


def corpus_scores(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """BLEU and chrF (0-100) with all references, and BLEU with only the first reference."""
    import sacrebleu

    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    streams = reference_streams(references)
    return {
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, streams).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, streams).score, 2),
        "bleu_first_reference": round(sacrebleu.corpus_bleu(hypotheses, [[r[0] for r in references]]).score, 2),
    }


def sacrebleu_signature(hypotheses: list[str], references: list[list[str]]) -> str:
    """sacreBLEU's reproducibility signature of the all-references BLEU."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    bleu.corpus_score(hypotheses, reference_streams(references))
    return str(bleu.get_signature())
