import pytest

from ptmzoo.data.sampling import StepSampler, eval_batches
from ptmzoo.errors import UserError


def _step_keys(sampler, step):
    return [k for batch in sampler.micro_batches(step) for k in batch]


@pytest.mark.parametrize("world,micro", [(1, 8), (2, 4), (2, 2), (4, 1)])
def test_global_batch_is_the_same_for_any_split(world, micro):
    reference = StepSampler(50, 8, 8, seed=1)
    for step in (0, 3, 7, 12):  # step 6 crosses the end of the first epoch
        union = []
        for rank in range(world):
            union += _step_keys(StepSampler(50, 8, micro, rank, world, seed=1), step)
        assert sorted(union) == sorted(_step_keys(reference, step))


def test_every_sample_once_per_epoch_and_resume_matches():
    sampler = StepSampler(20, 4, 4, seed=0)
    first_epoch = [k for step in range(5) for k in _step_keys(sampler, step)]
    assert sorted(i for i, _ in first_epoch) == list(range(20)) and {e for _, e in first_epoch} == {0}
    assert [k for step in range(5, 10) for k in _step_keys(sampler, step)] != first_epoch
    resumed = list(StepSampler(20, 4, 4, seed=0, start_step=3, max_steps=6))
    assert resumed == [sampler.micro_batches(s)[0] for s in (3, 4, 5)]


def test_bad_batch_split_is_a_user_error():
    with pytest.raises(UserError, match="multiple of"):
        StepSampler(10, 6, 4, world_size=1)
    with pytest.raises(UserError, match="no samples"):
        StepSampler(0, 4, 4)


def test_eval_batches_are_the_same_samples_for_any_world_size():
    parts = [eval_batches(10, 4, r, 2, None) for r in range(2)]
    keys = sorted(k for part in parts for batch in part for k in batch)
    assert keys == [(i, 0) for i in range(10)]
    limited = sorted(k for r in range(2) for batch in eval_batches(100, 4, r, 2, 3) for k in batch)
    assert limited == sorted(k for batch in eval_batches(100, 4, 0, 1, 3) for k in batch) == [(i, 0) for i in range(12)]
