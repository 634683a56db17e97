"""libxr.learning.sampling: what an epoch draws, seeded, and each process's share under DDP."""

from collections import Counter

import numpy as np
import pytest

from libxr.errors import UsageError
from libxr.learning.sampling import epoch_order
from libxr.records.tasks import Task

BINARY = Task("binary", ["NORMAL", "PNEUMONIA"])
Y = np.array([0] * 30 + [1] * 90, dtype=np.float32)


def classes(order):
    return Counter(int(Y[i]) for i in order)


def test_none_is_a_seeded_permutation():
    a = epoch_order(Y, 1, 0)
    assert sorted(a) == list(range(len(Y))) and a == epoch_order(Y, 1, 0)
    assert a != epoch_order(Y, 2, 0) and a != epoch_order(Y, 1, 1)


@pytest.mark.parametrize("sampling, expected", [pytest.param("over", {0: 90, 1: 90}, id="over"),
                                                pytest.param("under", {0: 30, 1: 30}, id="under")])
def test_over_and_under_sampling_equalise_the_classes(sampling, expected):
    order = epoch_order(Y, 0, 0, sampling, BINARY)
    assert classes(order) == expected
    if sampling == "over":
        assert set(order) == set(range(len(Y)))           # every record kept
    else:
        assert len(set(order)) == len(order)               # no repeats
        assert set(order) != set(epoch_order(Y, 0, 1, sampling, BINARY))   # a fresh subset each epoch


def test_balanced_draws_classes_equally_often():
    counts = Counter()
    for epoch in range(50):
        counts.update(classes(epoch_order(Y, 0, epoch, "balanced", BINARY)))
    assert abs(counts[0] / (counts[0] + counts[1]) - 0.5) < 0.03


@pytest.mark.parametrize("n", [120, 121, 7])
def test_processes_get_equal_shares_of_the_same_order(n):
    y = np.zeros(n)
    whole = epoch_order(y, 3, 2)
    shares = [epoch_order(y, 3, 2, rank=r, world=4) for r in range(4)]
    share = -(-n // 4)
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == share
    padded = whole + whole[: 4 * share - n]        # the last few repeat the first
    assert sorted(i for s in shares for i in s) == sorted(padded)
    # per-process batches of 2 are exactly the single process's batches of 8
    assert sorted(i for s in shares for i in s[:2]) == sorted(padded[:8])


@pytest.mark.parametrize("sampling, task, message", [
    pytest.param("over", Task("multilabel", ["a", "b"]), "multi-label", id="over-sampling-multilabel"),
    pytest.param("sideways", BINARY, "use none, balanced", id="unknown-sampling"),
])
def test_bad_sampling_requests(sampling, task, message):
    with pytest.raises(UsageError, match=message):
        epoch_order(Y, 0, 0, sampling, task)
