import numpy as np

from rnnlab.data.batching import BucketBatchSampler
from rnnlab.tasks.classify.model import collate


def test_bucket_sampler_yields_every_index_once_and_is_seeded_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    sampler = BucketBatchSampler(lengths, 32, shuffle=True, seed=3, pool_batches=4)
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    assert epoch0 == list(BucketBatchSampler(lengths, 32, shuffle=True, seed=3, pool_batches=4))
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert len(sampler) == len(epoch0)


def test_bucketing_cuts_padding():
    lengths = np.random.default_rng(0).integers(1, 60, size=2000)

    def padded_share(batches):
        total = sum(len(b) * lengths[b].max() for b in map(np.array, batches))
        return 1 - lengths.sum() / total

    bucketed = list(BucketBatchSampler(lengths, 32, shuffle=True, seed=0))
    rng = np.random.default_rng(0)
    order = rng.permutation(2000)
    plain = [order[i:i + 32] for i in range(0, 2000, 32)]
    assert padded_share(bucketed) < 0.1 < padded_share(plain)


def test_evaluation_order_is_deterministic_and_sorted():
    lengths = [5, 1, 3, 2, 4]
    batches = list(BucketBatchSampler(lengths, 2, shuffle=False))
    assert batches == [[1, 3], [2, 4], [0]]


def test_ranks_split_batches_without_loss():
    lengths = np.arange(1, 101)
    ranks = [list(BucketBatchSampler(lengths, 8, True, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    seen = {i for batches in ranks for b in batches for i in b}
    assert seen == set(range(100))


def test_collate_pads_right_with_zero():
    batch = collate([(0, [5, 6, 7], 1), (1, [8], 0)])
    assert batch["ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["lengths"].tolist() == [3, 1] and batch["labels"].tolist() == [1, 0]
    assert batch["index"].tolist() == [0, 1]
