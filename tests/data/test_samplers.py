"""The DDP samplers: training shares that partition every epoch (padded by wrapping), evaluation blocks
that cover every sample exactly once in order, and the mid-epoch skip of a resumed run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from perception.data.datamodules import EpochDataModule
from perception.data.samplers import EpochSampler, ShardSampler, shard_bounds


@given(n=st.integers(0, 200), replicas=st.integers(1, 9), epoch=st.integers(0, 5), shuffle=st.booleans())
def test_training_shares_cover_the_epoch_equally_padding_by_wrapping(n, replicas, epoch, shuffle):
    shares = []
    for rank in range(replicas):
        sampler = EpochSampler(n, shuffle=shuffle, seed=3, num_replicas=replicas, rank=rank)
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert len(keys) == len(sampler) == -(-n // replicas)
        assert all(e == epoch for e, _ in keys)
        shares.append([i for _, i in keys])
    flat = [i for share in shares for i in share]
    assert set(flat) == set(range(n))  # complete
    assert len(flat) - n == (-n) % replicas  # only the wrap-around padding repeats
    one = EpochSampler(n, shuffle=shuffle, seed=3)
    one.set_epoch(epoch)
    order = [i for _, i in one]
    # interleaving the shares gives the single-process order (then the padding)
    interleaved = [shares[k % replicas][k // replicas] for k in range(n)]
    assert interleaved == order


@given(n=st.integers(0, 300), replicas=st.integers(1, 12))
def test_evaluation_blocks_are_disjoint_complete_unpadded_and_in_order(n, replicas):
    blocks = [list(ShardSampler(n, replicas, rank)) for rank in range(replicas)]
    assert [i for block in blocks for i in block] == list(range(n))
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert [
        shard_bounds(n, replicas, r)[1] - shard_bounds(n, replicas, r)[0] for r in range(replicas)
    ] == sizes


def test_lightning_leaves_the_samplers_as_they_are():
    # Lightning wraps any sampler that is not a DistributedSampler in one that pads evaluation
    assert isinstance(EpochSampler(5), DistributedSampler) and isinstance(ShardSampler(5), DistributedSampler)


def test_bad_ranks_are_refused():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        ShardSampler(5, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="rank 0 of 0"):
        EpochSampler(5, num_replicas=0)


def test_resume_skips_the_trained_part_of_its_epoch_only():
    sampler = EpochSampler(10, seed=1, num_replicas=2, rank=1)
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.resume(epoch=3, done=2)
    assert list(sampler) == whole[2:]
    sampler.set_epoch(4)
    assert len(list(sampler)) == 5  # the next epoch is whole
    with pytest.raises(ValueError, match="cannot skip 6"):
        sampler.resume(epoch=4, done=6)


class _Module(EpochDataModule):
    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size, self.val_batch_size, self.seed = batch_size, batch_size, 0
        self.num_workers, self.pin_memory, self.persistent_workers = 0, False, False
        self.multiprocessing_context = None
        self.train_set = list(range(12))


def test_the_train_loader_resumes_mid_epoch_and_refuses_another_batch_size():
    module = _Module(batch_size=2)
    module.load_state_dict({"epoch": 0, "batches": 2, "batch_size": 2, "replicas": 1})
    loader = module.train_dataloader()
    assert len(list(loader.sampler)) == 12 - 4
    other = _Module(batch_size=4)
    other.load_state_dict({"epoch": 0, "batches": 2, "batch_size": 2, "replicas": 1})
    with pytest.raises(ValueError, match="batch_size 2 on 1 process"):
        other.train_dataloader()
    assert _Module(2).state_dict() == {}  # outside a fit there is nothing to save
