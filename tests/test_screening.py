"""The output layer's screening in bfloat16 on AMX tiles, and the exact top k it gives.

``predict_topk`` over many labels scores every label of a batch with
bfloat16 products, keeps the labels whose proven bound reaches the row's
k-th best lower bound, and scores those again in float32: its ids and score
bits are the float32 path's. Tests of the kernels compare each with a plain
reference; those that need the tile unit skip where it is not in use.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sksketch import SLIDEClassifier
from sksketch._kernels import _network, _simd
from sksketch._slide import _inference
from sksketch.datasets import make_extreme_classification

ACTIVE = _simd.screen_status() == "active"
needs_amx = pytest.mark.skipif(
    not ACTIVE, reason=f"the AMX screening is not in use here: {_simd.screen_status()}")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield


def _bf16(a):
    """float32 rounded to bfloat16 (nearest even), as float32: the reference."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).reshape(np.shape(a))


@pytest.mark.parametrize("L, H", [(1, 1), (16, 32), (37, 45), (200, 256)])
def test_packed_tiles_hold_each_weight_in_bfloat16(L, H):
    rng = np.random.default_rng(L)
    W = rng.standard_normal((L, H)).astype(np.float32)
    packed, k_steps = _simd.pack_bf16_tiles(W)
    assert k_steps == -(-H // 32)
    n_tiles = -(-L // 16)
    tiles = packed.reshape(n_tiles, 16 * k_steps, 16, 2)
    # label tile t, pair row p, label l, e: W[16 t + l, 2 p + e], zero past L x H
    grid = np.zeros((16 * n_tiles, 32 * k_steps), np.float32)
    grid[:L, :H] = _bf16(W)
    expected = grid.reshape(n_tiles, 16, 16 * k_steps, 2).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(
        (tiles.astype(np.uint32) << 16).view(np.float32), expected)


@needs_amx
@pytest.mark.parametrize("n, L, H", [(16, 16, 32), (48, 983, 256), (80, 50, 100)])
def test_tile_scores_are_the_bfloat16_products_summed(n, L, H):
    rng = np.random.default_rng(n)
    W = rng.standard_normal((L, H)).astype(np.float32)
    h = np.maximum(rng.standard_normal((n, H)), 0).astype(np.float32)
    packed, k_steps = _simd.pack_bf16_tiles(W)
    hb = np.zeros((n, 32 * k_steps), np.uint16)
    hb[:, :H] = (_bf16(h).view(np.uint32) >> 16).astype(np.uint16)
    out = _simd.screen_scores(hb, packed, L, k_steps)
    assert out.shape == (n, 16 * -(-L // 16))
    products = _bf16(h).astype(np.float64) @ _bf16(W).astype(np.float64).T
    # float32 sums of exact products: within K 2^-24 of their absolute sum
    slack = (32 * k_steps) * 2.0 ** -24 * (np.abs(_bf16(h)).astype(np.float64)
                                           @ np.abs(_bf16(W)).astype(np.float64).T)
    assert np.all(np.abs(out[:, :L] - products) <= slack + 1e-30)
    np.testing.assert_array_equal(out[:, L:], 0)
    with pytest.raises(ValueError, match="multiple of 16 rows"):
        _simd.screen_scores(hb[:15], packed, L, k_steps)
    with pytest.raises(ValueError, match="packed has"):
        _simd.screen_scores(hb, packed[:-1], L, k_steps)


def _select_reference(s, wn, bq, cw, b_row, e2, p2, k):
    """The candidates sks_screen_select_scalar documents, in numpy float32."""
    f = np.float32
    bnet = (f(cw) * wn).astype(f) + f(b_row)
    b = bnet * f(1 + 2.0 ** -16) + f(e2) * (((np.abs(s) + bnet) + bq) + f(p2))
    if not (np.all(np.abs(s) <= f(3e38)) and np.all(b <= f(3e38))):
        return -1, None
    T = np.sort(s - b)[::-1][k - 1]
    return None, np.flatnonzero(s + b >= T)


def _select_case(seed, n):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(n).astype(np.float32)
    s[rng.random(n) < 0.2] = s[0]  # ties
    wn = rng.random(n).astype(np.float32) + 0.5
    bq = np.abs(rng.standard_normal(n)).astype(np.float32)
    return s, wn, bq


@pytest.mark.parametrize("vector", [False, pytest.param(True, marks=needs_amx)])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 983])
@pytest.mark.parametrize("k", [1, 5, 16, 17, 40])
def test_select_keeps_every_label_that_can_be_in_the_top_k(vector, n, k):
    if k > n:
        k = n
    for seed in range(4):
        s, wn, bq = _select_case(seed, n)
        args = (s, wn, bq, 0.01, 1e-3, 2e-6, 0.1)
        count, cand = _simd.screen_select(*args, k, n, vector=vector)
        _, expected = _select_reference(*args, k)
        assert count == expected.size >= k
        np.testing.assert_array_equal(cand, expected)
        # too many for max_cand: -2
        if expected.size > k:
            assert _simd.screen_select(*args, k, expected.size - 1, vector=vector)[0] == -2


@needs_amx
def test_select_vector_pass_agrees_with_the_portable_one():
    for seed in range(50):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 400))
        s, wn, bq = _select_case(seed, n)
        k = int(rng.integers(1, min(n, 64) + 1))
        args = (s, wn, bq, float(rng.random()) * 0.02, float(rng.random()) * 1e-2, 1e-6, 0.0)
        a = _simd.screen_select(*args, k, n, vector=False)
        b = _simd.screen_select(*args, k, n, vector=True)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("vector", [False, pytest.param(True, marks=needs_amx)])
def test_select_refuses_scores_or_bounds_that_are_not_finite(vector):
    s, wn, bq = _select_case(0, 40)
    for bad in (np.nan, np.inf, -np.inf):
        t = s.copy()
        t[33] = bad
        assert _simd.screen_select(t, wn, bq, 0.01, 0.0, 1e-6, 0.0, 3, 40,
                                   vector=vector)[0] == -1
    assert _simd.screen_select(s, wn, bq, np.inf, 0.0, 1e-6, 0.0, 3, 40, vector=vector)[0] == -1
    with pytest.raises(ValueError, match="k must be"):
        _simd.screen_select(s, wn, bq, 0.01, 0.0, 0.0, 0.0, 0, 40, vector=vector)
    with pytest.raises(ValueError, match="same length"):
        _simd.screen_select(s, wn[:-1], bq, 0.01, 0.0, 0.0, 0.0, 3, 40, vector=vector)


@needs_amx
@pytest.mark.parametrize("L, H", [(983, 256), (61, 45), (8, 16), (7, 300)])
def test_candidates_get_the_float32_kernels_bits(L, H):
    """group_dots gives a label the bits output_scores gives it (whole groups
    of eight and the labels past the last one alike)."""
    rng = np.random.default_rng(H)
    W = rng.standard_normal((L, H)).astype(np.float32)
    b = rng.standard_normal(L).astype(np.float32)
    h = np.maximum(rng.standard_normal((9, H)), 0).astype(np.float32)
    full = _network.output_scores(h, W, b, 2)
    for i in range(h.shape[0]):
        cand = rng.permutation(L)[: int(rng.integers(1, L + 1))].astype(np.int32)
        got = _simd.group_dots(h[i], W, b, cand)
        np.testing.assert_array_equal(got.view(np.int32), full[i, cand].view(np.int32))
    with pytest.raises(ValueError, match="out of range"):
        _simd.group_dots(h[0], W, b, np.array([L], np.int32))


def test_screen_bound_covers_bfloat16_products():
    u = 2.0 ** -8
    c = _inference.screen_bound(8)
    assert 2 * u < c < 2 * u * 1.01


def _model(head, seed=0, n_labels=600, n_features=120):
    X, Y = make_extreme_classification(n_samples=2500, n_features=n_features,
                                       n_labels=n_labels, random_state=seed)
    clf = SLIDEClassifier(hidden_layer_size=48, max_iter=2, random_state=0, n_jobs=2,
                          sparse_head=head).fit(X[:2000], Y[:2000])
    return clf, X[2000:]


@needs_amx
@pytest.mark.parametrize("head", [True, False])
def test_screened_top_k_is_the_top_k_of_every_label(monkeypatch, head):
    """predict_topk's screening gives the float32 path's ids and score bits."""
    clf, Xt = _model(head)
    Xc = clf._validate_X(Xt, reset=False)
    h = _inference.hidden(clf, Xc)
    if head:  # the head weighs in and is scored from its dense copy
        assert clf.sparse_head_weight_ > 0 and clf.sparse_head_.scores_densely(Xc.shape[0])
    calls = []
    real = _inference._screened_topk
    monkeypatch.setattr(_inference, "_screened_topk",
                        lambda *args: calls.append(args[2].shape[0]) or real(*args))
    for k in (1, 5, 17):
        full_ids, full = _inference._full_topk(clf, h, Xc, k, 2)
        ids, scores = clf.predict_topk(Xt, k=k)
        np.testing.assert_array_equal(ids, clf.classes_[full_ids])
        np.testing.assert_array_equal(scores.astype(np.float32).view(np.int32),
                                      full.view(np.int32))
    assert calls == [Xt.shape[0]] * 3
    # rows alone (scored in float32) and in a batch (screened): the same
    n = 300  # (a head is scored from its dense copy from 256 rows on)
    one = np.vstack([clf.predict_topk(Xt[i], k=5)[0] for i in range(n)])
    np.testing.assert_array_equal(one, clf.predict_topk(Xt[:n], k=5)[0])
    assert calls[-1] == n
    # training moves the weights: the packed copy follows
    clf.partial_fit(*make_extreme_classification(n_samples=300, n_features=120,
                                                 n_labels=600, random_state=9))
    full_ids, _ = _inference._full_topk(clf, _inference.hidden(clf, Xc), Xc, 3, 2)
    np.testing.assert_array_equal(clf.predict_topk(Xt, k=3)[0], clf.classes_[full_ids])


@needs_amx
def test_rows_with_too_many_candidates_are_scored_in_full(monkeypatch):
    """Equal scores everywhere leave every label a candidate: the row goes to
    the float32 path, with the same (lowest-index) ties."""
    clf, Xt = _model(False, seed=1)
    clf.output_weights_ = np.zeros_like(clf.output_weights_)
    clf.output_bias_ = np.zeros_like(clf.output_bias_)
    left = []
    real = _inference._full_topk
    monkeypatch.setattr(_inference, "_full_topk",
                        lambda est, h, *a: left.append(h.shape[0]) or real(est, h, *a))
    ids, scores = clf.predict_topk(Xt[:40], k=4)
    assert left == [40]  # every row left to the float32 path
    np.testing.assert_array_equal(ids, np.tile(clf.classes_[:4], (40, 1)))
    np.testing.assert_array_equal(scores, 0)


@needs_amx
def test_screening_does_not_apply_below_its_limits(monkeypatch):
    clf, Xt = _model(True, n_labels=100)  # too few labels
    assert _inference._screen_entry(clf, 500, 5) is None
    clf, Xt = _model(True)
    assert _inference._screen_entry(clf, 500, 5) is not None
    assert _inference._screen_entry(clf, _inference.SCREEN_MIN_ROWS - 1, 5) is None
    assert _inference._screen_entry(clf, 500, _inference.SCREEN_MAX_K + 1) is None
    # an output layer whose packed copy would be too large
    L, H = clf.output_weights_.shape
    monkeypatch.setattr(_inference, "SCREEN_MAX_PACKED_BYTES", L * 64 * 2 - 1)  # H=48 -> 64
    assert _inference._screen_entry(clf, 500, 5) is None
    monkeypatch.setattr(_inference, "SCREEN_MAX_PACKED_BYTES", -(-L // 16) * 16 * 64 * 2)
    assert _inference._screen_entry(clf, 500, 5) is not None
    clf.output_weights_ = clf.output_weights_.copy()
    clf.output_weights_[3, 4] = np.nan  # a weight not finite: the float32 path
    assert _inference._screen_entry(clf, 500, 5) is None


def _status_with(env):
    code = "from sksketch._kernels import _simd; print(_simd.screen_status())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_environment_turns_the_screening_off():
    assert _status_with({"SKSKETCH_AMX": "0"}) == (
        "off (SKSKETCH_AMX=0)" if _simd.screen_status() != "not built (the compiler lacks "
        "AMX, or not x86-64 Linux)" else _simd.screen_status())
    status = _status_with({"SKSKETCH_ISA": "scalar"})
    assert status != "active"
    import sksketch

    config = sksketch.show_config("dicts")["simd"]
    assert config["amx_screening"] == _simd.screen_status()


def test_without_the_screening_the_same_predictions():
    """A model predicts the same ids and scores with the screening off."""
    X, Y = make_extreme_classification(n_samples=1500, n_features=80, n_labels=520,
                                       random_state=4)
    code = (
        "import pickle, sys, numpy as np\n"
        "clf, Xt = pickle.load(open(sys.argv[1], 'rb'))\n"
        "ids, s = clf.predict_topk(Xt, k=5)\n"
        "np.save(sys.argv[2], np.hstack([ids.astype(np.float64), s]))\n"
    )
    import pickle
    import tempfile

    clf = SLIDEClassifier(hidden_layer_size=32, max_iter=1, random_state=0, n_jobs=1).fit(
        X[:1200], Y[:1200])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.pkl")
        with open(path, "wb") as f:
            pickle.dump((clf, sp.csr_matrix(X[1200:])), f)
        outs = []
        for value in ("1", "0"):
            target = os.path.join(tmp, f"out{value}.npy")
            subprocess.run([sys.executable, "-c", code, path, target], check=True,
                           env={**os.environ, "SKSKETCH_AMX": value})
            outs.append(np.load(target))
    np.testing.assert_array_equal(outs[0], outs[1])
