"""Thinning samplers: epochs that train on a subset of the rows, weighted by 1 / p."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

import sksketch
from sksketch import ImportanceSampledClassifier, SLIDEClassifier, ZeroShotSoftLabelClassifier
from sksketch.datasets import make_extreme_classification
from sksketch.sampling import ExactLossSampler, NWSketchSampler, UniformSampler, run_epoch
from sksketch.sampling._thinning import (
    THINNING_CHUNK,
    auto_keep_fraction,
    forced_rows,
    thinning_probabilities,
)


def _reference_probabilities(scores, budget, floor):
    """Exact solution of sum(clip(c s, floor, 1)) == budget by the breakpoints of c."""
    s = np.where(np.isfinite(scores) & (scores > 0), scores, 0.0).astype(np.float64)
    n = len(s)
    budget = min(max(budget, floor * n), n)
    if budget >= n:
        return np.ones(n)
    if budget <= floor * n or not s.any():
        return np.full(n, max(floor, budget / n))
    pos = s[s > 0]
    if len(pos) + floor * (n - len(pos)) <= budget:
        p = np.ones(n)
        p[s == 0] = min(1.0, max(floor, (budget - len(pos)) / (n - len(pos))))
        return p
    # the total is piecewise linear in c, with breaks at floor / s and 1 / s
    breaks = np.unique(np.r_[floor / pos, 1.0 / pos])

    def total(c):
        return np.clip(c * s, floor, 1.0).sum()

    values = np.array([total(c) for c in breaks])
    k = np.searchsorted(values, budget)
    lo, hi = breaks[k - 1], breaks[k]
    t_lo, t_hi = values[k - 1], values[k]
    c = lo + (budget - t_lo) * (hi - lo) / (t_hi - t_lo)
    return np.clip(c * s, floor, 1.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep", [0.07, 0.2, 0.5, 0.9])
def test_probabilities_match_the_exact_solution(seed, keep):
    rng = np.random.RandomState(seed)
    n = 500
    scores = rng.lognormal(0.0, 1.5, n)
    scores[rng.rand(n) < 0.1] = 0.0
    floor = 0.05
    p = thinning_probabilities(scores, keep * n, floor)
    ref = _reference_probabilities(scores, keep * n, floor)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-9)
    assert p.sum() == pytest.approx(keep * n, rel=1e-5)
    assert p.min() >= floor - 1e-12 and p.max() <= 1.0
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-12)  # more loss, more likely kept


def test_probabilities_edge_cases():
    floor = 0.1
    # nothing to go on: every row gets the budget's share
    np.testing.assert_allclose(thinning_probabilities(np.zeros(10), 3, floor), 0.3)
    np.testing.assert_allclose(thinning_probabilities(np.ones(10), 3, floor), 0.3)
    # a budget of every row, or more
    np.testing.assert_allclose(thinning_probabilities(np.arange(10.0), 10, floor), 1.0)
    np.testing.assert_allclose(thinning_probabilities(np.arange(10.0), 20, floor), 1.0)
    # below the floor's share: the floor
    np.testing.assert_allclose(thinning_probabilities(np.arange(10.0), 0.5, floor), floor)
    # two rows with a loss, a budget of five: both kept, the rest share three
    p = thinning_probabilities(np.r_[5.0, 1.0, np.zeros(8)], 5, floor)
    np.testing.assert_allclose(p, np.r_[1.0, 1.0, np.full(8, 3 / 8)])
    # non-finite and negative scores count as zero
    p = thinning_probabilities(np.array([np.nan, -1.0, np.inf, 2.0]), 2, 0.2)
    assert p[3] == 1.0 and np.allclose(p[:3], 1 / 3)
    assert thinning_probabilities(np.zeros(0), 0, floor).shape == (0,)


def test_auto_keep_fraction_is_the_effective_share_of_the_losses():
    assert auto_keep_fraction(np.ones(100), 0.05) == 1.0
    assert auto_keep_fraction(np.r_[np.ones(10), np.zeros(90)], 0.05) == pytest.approx(0.1)
    assert auto_keep_fraction(np.r_[np.ones(1), np.zeros(999)], 0.05) == 0.05  # the floor
    assert auto_keep_fraction(np.zeros(5), 0.05) == 1.0
    rng = np.random.RandomState(0)
    even, skewed = rng.uniform(1, 2, 1000), rng.lognormal(0, 2, 1000)
    assert auto_keep_fraction(skewed, 0.01) < 0.2 < 0.9 < auto_keep_fraction(even, 0.01)


def test_forced_rows_reads_codes_and_indicators():
    codes = np.array([0, 2, 1, 2])
    classes = np.array(["a", "b", "c"])
    np.testing.assert_array_equal(forced_rows(["c"], codes, classes), [0, 1, 0, 1])
    np.testing.assert_array_equal(forced_rows([2], codes, None), [0, 1, 0, 1])
    Y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0]])
    for indicator in (Y, sp.csr_matrix(Y)):
        np.testing.assert_array_equal(forced_rows([2], indicator, None), [0, 1, 0, 0])
        np.testing.assert_array_equal(forced_rows(["a", "b"], indicator, classes), [1, 1, 0, 1])
    assert forced_rows(None, codes, classes) is None
    with pytest.raises(ValueError, match="always_keep needs the rows' labels"):
        forced_rows([1], None, None)


def _epochs(sampler, n_epochs, batch_size=64, loss=None):
    """Rows and weights of each epoch; losses (if given) fed back to the sampler."""
    out = []
    for _ in range(n_epochs):
        batches = []

        def step(idx, w, batches=batches):
            batches.append((idx.copy(), w.copy()))
            return None if loss is None else loss[idx]

        run_epoch(sampler, batch_size, step)
        out.append(tuple(np.concatenate(part) for part in zip(*batches, strict=True)))
    return out


def test_random_thinning_keeps_its_share_once_each_weighted_by_the_inverse():
    X = np.zeros((20000, 2), dtype=np.float32)
    sampler = UniformSampler(keep_fraction=0.25, weighting="importance", random_state=0)
    sampler.start(X)
    for rows, weights in _epochs(sampler, 2):
        assert len(np.unique(rows)) == len(rows)  # each row at most once
        assert abs(len(rows) / 20000 - 0.25) < 0.02
        np.testing.assert_allclose(weights, 4.0)
    assert sampler.epoch_stats_["kept_fraction"] == pytest.approx(len(rows) / 20000)
    for weighting in ("none", "auto", "self-normalised"):
        unweighted = UniformSampler(keep_fraction=0.25, weighting=weighting, random_state=0)
        np.testing.assert_array_equal(_epochs(unweighted.start(X), 1)[0][1], 1.0)

    # shuffle=False: the kept rows come in order, a different subset each epoch
    ordered = UniformSampler(shuffle=False, keep_fraction=0.25, random_state=0).start(X)
    (first, _), (second, _) = _epochs(ordered, 2)
    assert np.all(np.diff(first) > 0) and np.all(np.diff(second) > 0)
    assert not np.array_equal(first, second)


def test_weighted_sums_over_the_kept_rows_are_unbiased():
    # Horvitz-Thompson: E[sum over kept rows of v_i / p_i] = sum of v_i
    rng = np.random.RandomState(0)
    n = 3000
    X = rng.randn(n, 4).astype(np.float32)
    values = rng.lognormal(0, 1, n)
    scores = rng.lognormal(0, 1, n)
    sampler = ExactLossSampler(
        keep_fraction=0.2, min_keep_probability=0.02, weighting="importance", random_state=1
    )
    sampler.start(X, loss_fn=lambda idx: scores[idx])
    estimates = [float(w @ values[rows]) for rows, w in _epochs(sampler, 200)]
    total = values.sum()
    assert abs(np.mean(estimates) - total) < 4 * np.std(estimates) / np.sqrt(200)
    assert abs(np.mean(estimates) / total - 1) < 0.02


def test_loss_thinning_keeps_the_high_loss_rows():
    rng = np.random.RandomState(0)
    n = 3 * THINNING_CHUNK
    X = rng.randn(n, 5).astype(np.float32)
    hard = X[:, 0] > 0.6 * np.linalg.norm(X, axis=1)  # a cone: SimHash is angular
    loss = np.where(hard, 2.0, 0.02).astype(np.float32)
    sampler = NWSketchSampler(keep_fraction=0.3, min_keep_probability=0.05, random_state=0)
    sampler.start(X)
    first, second = _epochs(sampler, 2, loss=loss)
    # before any loss is known the first chunk is thinned at random
    assert abs(len(first[0]) / n - 0.3) < 0.03
    rows = second[0]
    kept = np.zeros(n, dtype=bool)
    kept[rows] = True
    assert kept[hard].mean() > 0.85
    assert kept[~hard].mean() < 0.25
    assert abs(len(rows) / n - 0.3) < 0.03


def test_always_keep_rows_are_in_every_epoch():
    rng = np.random.RandomState(0)
    n = 10000
    X = rng.randn(n, 3).astype(np.float32)
    y = (rng.rand(n) < 0.1).astype(int)
    for sampler in (
        UniformSampler(keep_fraction=0.3, always_keep=[1], weighting="importance",
                       random_state=0),
        NWSketchSampler(keep_fraction=0.3, always_keep=[1], weighting="importance",
                        random_state=0),
    ):
        sampler.start(X, y=y, classes=np.array([0, 1]))
        loss = rng.rand(n).astype(np.float32)
        for rows, weights in _epochs(sampler, 2, loss=loss):
            kept = np.zeros(n, dtype=bool)
            kept[rows] = True
            assert kept[y == 1].all()
            position = {r: i for i, r in enumerate(rows)}
            forced_weights = weights[[position[r] for r in np.flatnonzero(y == 1)]]
            np.testing.assert_allclose(forced_weights, 1.0)
            assert abs(len(rows) / n - 0.3) < 0.03  # the forced rows count in the budget
    with pytest.raises(ValueError, match="always_keep needs"):
        UniformSampler(keep_fraction=0.3, always_keep=[1]).start(X)
    with pytest.raises(ValueError, match="y has 3 rows, X has 10000"):
        UniformSampler(keep_fraction=0.3, always_keep=[1]).start(X, y=[0, 1, 1])


def test_floor_keeps_every_row_sometimes():
    rng = np.random.RandomState(0)
    n = 2000
    X = rng.randn(n, 3).astype(np.float32)
    loss = np.r_[np.full(200, 5.0), np.zeros(n - 200)].astype(np.float32)
    # 200 rows with a loss and 1800 at the floor: a budget of 380 rows
    sampler = ExactLossSampler(
        keep_fraction=0.19, min_keep_probability=0.1, weighting="importance", random_state=0
    )
    sampler.start(X, loss_fn=lambda idx: loss[idx])
    counts = np.zeros(n)
    for rows, weights in _epochs(sampler, 60):
        counts[rows] += 1
        assert weights.max() <= 1 / 0.1 + 1e-4
    assert counts[:200].min() == 60
    assert abs(counts[200:].mean() / 60 - 0.1) < 0.02


def test_self_normalised_batches_have_mean_weight_one():
    rng = np.random.RandomState(0)
    X = rng.randn(5000, 3).astype(np.float32)
    loss = rng.lognormal(0, 1, 5000).astype(np.float32)
    sampler = ExactLossSampler(keep_fraction=0.3, weighting="self-normalised", random_state=0)
    sampler.start(X, loss_fn=lambda idx: loss[idx])
    for _, w in sampler.batches(100):
        assert w.mean(dtype=np.float64) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    "sampler, message",
    [
        (UniformSampler(keep_fraction=0.0), "keep_fraction"),
        (UniformSampler(keep_fraction=1.5), "keep_fraction"),
        (UniformSampler(keep_fraction="auto"), "keep_fraction"),
        (NWSketchSampler(keep_fraction="most"), "keep_fraction"),
        (NWSketchSampler(min_keep_probability=0.0), "min_keep_probability"),
        (NWSketchSampler(keep_fraction=0.01, min_keep_probability=0.05), "below"),
        (ExactLossSampler(weighting="all"), "weighting"),
    ],
)
def test_bad_thinning_parameters_name_themselves(sampler, message):
    with pytest.raises(ValueError, match=message):
        sampler.start(np.zeros((4, 2), dtype=np.float32), loss_fn=lambda idx: np.ones(len(idx)))


def _thin_clf(sampler):
    return ImportanceSampledClassifier(sampler=sampler, batch_size=100, max_iter=3, random_state=0)


@pytest.mark.parametrize(
    "sampler",
    [
        UniformSampler(keep_fraction=0.3),
        NWSketchSampler(keep_fraction=0.3),
        NWSketchSampler(keep_fraction="auto", always_keep=[1]),
        ExactLossSampler(keep_fraction=0.3),
    ],
    ids=["random", "nw", "nw-auto-keep-positives", "exact"],
)
def test_importance_sampled_classifier_trains_on_the_kept_rows(sampler):
    X, y = make_classification(20000, 10, weights=[0.85], random_state=0)
    seen = []
    clf = _thin_clf(sampler).fit(X, y)
    trained = clf.sampler_.epoch_stats_["n_draws"]
    assert trained == round(clf.sampler_.epoch_stats_["kept_fraction"] * 20000)
    if sampler.keep_fraction != "auto":
        assert trained < 0.4 * 20000
    assert clf.score(X, y) > 0.8
    # partial_fit thins each block before training on it
    stream = _thin_clf(sampler)
    for start in range(0, 20000, 5000):
        stream.partial_fit(X[start : start + 5000], y[start : start + 5000], classes=[0, 1])
        seen.append(stream.sampler_.epoch_stats_["n_draws"])
    assert sum(seen) < 20000 if sampler.keep_fraction != "auto" else sum(seen) <= 20000
    assert stream.score(X, y) > 0.75


def test_loss_thinning_loses_less_than_random_thinning_at_the_same_keep_rate():
    # most rows lie far from the boundary and are learnt at once: a fifth of
    # them kept by loss (weighted 1/p) does nearly as well as every row, and
    # better than a random fifth
    rng = np.random.RandomState(0)
    X = rng.randn(30000, 10)
    y = (rng.rand(30000) < 1 / (1 + np.exp(-3 * X @ rng.randn(10)))).astype(int)
    Xt, yt, X, y = X[20000:], y[20000:], X[:20000], y[:20000]
    sgd = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.01, alpha=1e-6)

    def test_loss(sampler, seed):
        clf = ImportanceSampledClassifier(
            sgd, sampler=sampler, batch_size=100, max_iter=2, random_state=seed
        ).fit(X, y)
        return log_loss(yt, clf.predict_proba(Xt))

    seeds = range(3)
    exact_sampler = ExactLossSampler(keep_fraction=0.2, weighting="importance")
    random_sampler = UniformSampler(keep_fraction=0.2, weighting="importance")
    exact = np.mean([test_loss(exact_sampler, seed) for seed in seeds])
    random = np.mean([test_loss(random_sampler, seed) for seed in seeds])
    every = np.mean([test_loss(None, seed) for seed in seeds])
    assert exact < random - 0.002
    # more than half of what random thinning loses is won back
    assert exact - every < 0.5 * (random - every)


def test_slide_and_zero_shot_train_on_the_kept_rows():
    X, Y = make_extreme_classification(3000, 500, 100, random_state=0)
    clf = SLIDEClassifier(
        sampler=NWSketchSampler(keep_fraction=0.3), max_iter=3, random_state=0, n_jobs=1
    ).fit(X, Y)
    kept = clf.sampler_.epoch_stats_["n_draws"]
    assert kept < 0.4 * 3000 and clf.t_ < 0.4 * 3 * 3000
    rng = np.random.RandomState(0)
    A = rng.rand(6, 4)
    Xz, yz = rng.randn(900, 8), rng.randint(0, 4, 900)
    z = ZeroShotSoftLabelClassifier(
        A, sampler=UniformSampler(keep_fraction=0.5, always_keep=[3]), max_iter=2,
        calibration_gamma=0.0, random_state=0,
    ).fit(Xz, yz)
    assert 0.4 < z.sampler_.epoch_stats_["kept_fraction"] < 0.65
    assert z.t_ == pytest.approx(2 * 0.5 * 900, rel=0.2)


def test_thinning_samplers_survive_persistence(tmp_path):
    X, y = make_classification(3000, 8, random_state=0)
    clf = _thin_clf(NWSketchSampler(keep_fraction=0.3, always_keep=[1])).fit(X, y)
    sksketch.save(clf, tmp_path / "m.npz")
    for restored in (pickle.loads(pickle.dumps(clf)), sksketch.load(tmp_path / "m.npz")):
        np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
        assert restored.sampler_.get_params() == clf.sampler_.get_params()
    assert clone(clf).get_params()["sampler"].keep_fraction == 0.3
