"""Sampler sharding, determinism and resume offsets."""

import itertools

import numpy as np
import pytest

from det_dcn.data.samplers import (AspectRatioGroupedBatchSampler, InferenceSampler, TrainingSampler,
                                   resolve_seed)


def _take(it, n):
    return list(itertools.islice(iter(it), n))


@pytest.mark.parametrize("size,world", [(10, 2), (11, 3), (7, 4), (100, 8)])
def test_training_shards_disjoint_and_cover_each_pass(size, world):
    for shuffle in (True, False):
        per_rank = [_take(TrainingSampler(size, shuffle, seed=3, rank=r, world_size=world), 3 * size)
                    for r in range(world)]
        # Re-interleave: the global stream; every consecutive pass of `size` items is a permutation.
        stream = [per_rank[i % world][i // world] for i in range(3 * size)]
        for p in range(3):
            assert sorted(stream[p * size:(p + 1) * size]) == list(range(size))
        if size % world == 0:  # then each pass splits into disjoint equal shards
            first = [set(s[: size // world]) for s in per_rank]
            assert sum(len(s) for s in first) == size and set().union(*first) == set(range(size))


def test_training_sampler_seeded_and_start_offset():
    a = _take(TrainingSampler(20, True, seed=5, rank=1, world_size=2), 40)
    assert a == _take(TrainingSampler(20, True, seed=5, rank=1, world_size=2), 40)
    assert a != _take(TrainingSampler(20, True, seed=6, rank=1, world_size=2), 40)
    assert _take(TrainingSampler(20, True, seed=5, start=13, rank=1, world_size=2), 27) == a[13:]
    with pytest.raises(ValueError, match="size"):
        TrainingSampler(0)


def test_random_seed_when_negative():
    assert resolve_seed(7) == 7
    s = resolve_seed(-1)
    assert isinstance(s, int) and s >= 0


@pytest.mark.parametrize("size,world", [(0, 2), (1, 3), (10, 3), (17, 4), (5, 8)])
def test_inference_sampler_every_index_exactly_once(size, world):
    parts = [list(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)]
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(size)) and len(flat) == size
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_aspect_grouping():
    groups = np.array([0, 1] * 10)
    sampler = TrainingSampler(20, True, seed=0, rank=0, world_size=1)
    batches = _take(AspectRatioGroupedBatchSampler(sampler, 3, groups), 30)
    assert all(len(b) == 3 and len({groups[i] for i in b}) == 1 for b in batches)
    again = _take(AspectRatioGroupedBatchSampler(sampler, 3, groups), 30)
    assert batches == again
    plain = _take(AspectRatioGroupedBatchSampler(sampler, 4), 5)
    assert [i for b in plain for i in b] == _take(sampler, 20)
