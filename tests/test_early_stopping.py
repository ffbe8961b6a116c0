"""The validity rule against MLPerf LoadGen's figures and a binomial sum written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.measure.early_stopping import evaluate, max_over_bound, min_passing_queries, min_queries


def binomial_cdf(k: int, n: int, q: float) -> float:
    """P(Binomial(n, q) <= k), summed term by term: independent of the incomplete beta the module uses."""
    return math.fsum(math.comb(n, x) * q**x * (1 - q) ** (n - x) for x in range(k + 1))


def test_reproduces_mlperf_minimum_of_662_queries_for_p99():
    # loadgen/mlperf.conf: *.MultiStream.min_query_count = 662, LoadGen's h(1) + 1 at p99 and 99% confidence
    assert min_queries(0.99, 0.99) == 662
    assert min_passing_queries(1, 0.99, 0.99) == 661
    assert min_passing_queries(0, 0.99, 0.99) == 459  # 0.99^459 < 0.01 <= 0.99^458
    assert 0.99**459 < 0.01 <= 0.99**458


@pytest.mark.parametrize("percentile,confidence", [(0.99, 0.99), (0.9, 0.99), (0.99, 0.95), (0.999, 0.99)])
@pytest.mark.parametrize("over", [0, 1, 2, 5, 20])
def test_min_passing_queries_is_the_binomial_boundary(over, percentile, confidence):
    h = min_passing_queries(over, percentile, confidence)
    q = 1 - percentile
    assert binomial_cdf(over, h + over, q) < 1 - confidence
    assert binomial_cdf(over, h - 1 + over, q) >= 1 - confidence


def test_max_over_bound_is_the_largest_count_that_fits():
    assert max_over_bound(458) == -1
    assert max_over_bound(459) == 0
    assert max_over_bound(661) == 0
    assert max_over_bound(662) == 1
    for n in (1000, 5000, 20_000):
        t = max_over_bound(n)
        assert min_passing_queries(t) + t <= n < min_passing_queries(t + 1) + t + 1
        assert t < 0.01 * n  # always fewer over the bound than the percentile's share


def test_too_few_queries_is_invalid_even_when_all_are_fast():
    verdict = evaluate(np.full(661, 0.001), bound_s=0.01)
    assert not verdict.valid
    assert "needs at least 662" in verdict.reason
    assert verdict.min_queries == 662


def test_662_queries_pass_with_at_most_one_over_the_bound():
    fast = np.full(662, 0.001)
    ok = evaluate(fast, bound_s=0.01)
    assert ok.valid and ok.over_bound == 0 and ok.max_over_bound == 1
    one_slow = fast.copy()
    one_slow[100] = 0.5
    verdict = evaluate(one_slow, bound_s=0.01)
    assert verdict.valid and verdict.estimate_s == pytest.approx(0.001)  # the estimate is the 2nd largest
    two_slow = one_slow.copy()
    two_slow[200] = 0.02
    verdict = evaluate(two_slow, bound_s=0.01)
    assert not verdict.valid
    assert verdict.estimate_s == pytest.approx(0.02)
    assert verdict.needed == min_passing_queries(2) + 2 == 838


def test_a_latency_equal_to_the_bound_is_not_over_it():
    lat = np.full(662, 0.001)
    lat[:2] = 0.01
    assert evaluate(lat, bound_s=0.01).valid


def test_not_completed_queries_count_as_over_the_bound():
    fast = np.full(700, 0.001)
    assert evaluate(fast, bound_s=0.01, not_completed=1).valid
    verdict = evaluate(fast, bound_s=0.01, not_completed=2)
    assert not verdict.valid
    assert verdict.queries == 702 and verdict.over_bound == 2
    assert "2 not completed" in verdict.reason
    assert verdict.estimate_s is None  # the estimate falls on a query that never finished


def test_valid_exactly_when_the_estimate_is_within_the_bound():
    rng = np.random.default_rng(0)
    for n in (662, 700, 1500, 4000):
        for _ in range(20):
            lat = rng.lognormal(mean=np.log(0.005), sigma=0.5, size=n)
            bound = float(np.quantile(lat, rng.uniform(0.97, 0.999)))
            verdict = evaluate(lat, bound)
            assert verdict.valid == (verdict.estimate_s is not None and verdict.estimate_s <= bound)
            assert verdict.estimate_s >= np.percentile(lat, 99, method="higher")  # conservative


def test_verdict_is_json_ready():
    import json

    json.dumps(evaluate(np.full(700, 0.001), bound_s=0.01).to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"percentile": 99},
        {"percentile": 1.0},
        {"confidence": 0.0},
        {"bound_s": 0.0},
        {"not_completed": -1},
        {"latencies_s": [0.1, math.nan]},
    ],
)
def test_evaluate_rejects_bad_arguments(kwargs):
    args = {"latencies_s": np.full(10, 0.001), "bound_s": 0.01}
    args.update(kwargs)
    with pytest.raises(ValueError):
        evaluate(**args)
