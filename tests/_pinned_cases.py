"""Fixed-seed fits whose predictions tests/test_pinned.py compares bit for bit.

Run as a script to write ``tests/data/pinned_predictions.npz`` anew; do so
only for a change meant to move the numbers, and say why in its commit.
"""

import json
import pathlib

import numpy as np

DATA = pathlib.Path(__file__).parent / "data" / "pinned_predictions.npz"


def _extreme(seed=0):
    from sksketch.datasets import make_extreme_classification

    X, Y = make_extreme_classification(
        n_samples=1200, n_features=3000, n_labels=800, random_state=seed)
    return X[:1000], Y[:1000], X[1000:]


def _multiclass():
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=900, n_features=30, n_informative=12, n_classes=6, random_state=0)
    return X[:700], y[:700], X[700:]


def _slide(**params):
    def run():
        from sksketch import SLIDEClassifier

        X, Y, X_test = _extreme()
        clf = SLIDEClassifier(hidden_layer_size=64, max_iter=3, n_jobs=1, random_state=0,
                              **params).fit(X, Y)
        ids, scores = clf.predict_topk(X_test, k=5)
        return {"ids": ids, "scores": scores}
    return run


def _slide_partial():
    from sksketch import SLIDEClassifier

    X, Y, X_test = _extreme()
    clf = SLIDEClassifier(hidden_layer_size=64, n_jobs=1, random_state=0)
    for start in range(0, X.shape[0], 250):
        clf.partial_fit(X[start:start + 250], Y[start:start + 250])
    ids, scores = clf.predict_topk(X_test, k=5)
    return {"ids": ids, "scores": scores}


def _slide_multiclass():
    from sksketch import SLIDEClassifier

    X, y, X_test = _multiclass()
    clf = SLIDEClassifier(hidden_layer_size=32, max_iter=5, n_jobs=1, random_state=0).fit(X, y)
    return {"proba": clf.predict_proba(X_test)}


def _zeroshot():
    from sksketch import ZeroShotSoftLabelClassifier

    X, y, X_test = _multiclass()
    rng = np.random.RandomState(0)
    attributes = rng.rand(6, 10)
    seen = y < 4
    clf = ZeroShotSoftLabelClassifier(
        attributes, classes=np.arange(6), hidden_layer_sizes=(32,), max_iter=5, n_jobs=1,
        random_state=0).fit(X[seen], y[seen])
    return {"proba": clf.predict_proba(X_test)}


def _importance():
    from sklearn.linear_model import SGDClassifier

    from sksketch import ImportanceSampledClassifier
    from sksketch.sampling import NWSketchSampler

    X, y, X_test = _multiclass()
    clf = ImportanceSampledClassifier(
        SGDClassifier(loss="log_loss", random_state=0), sampler=NWSketchSampler(random_state=0),
        max_iter=3, random_state=0).fit(X, y)
    return {"proba": clf.predict_proba(X_test)}


CASES = {
    "slide_default": _slide(),
    "slide_lsh_embedding": _slide(sparse_head=False),
    "slide_unigram_bf16": _slide(negative_sampling="unigram", precision="bfloat16",
                                 sparse_head=False),
    "slide_lsh_label_logq": _slide(negative_sampling="lsh-label", sampling_correction="logq",
                                   sparse_head=False),
    "slide_nw_sampler": _slide(sampler="nw-sketch"),
    "slide_partial_fit": _slide_partial,
    "slide_multiclass": _slide_multiclass,
    "zeroshot": _zeroshot,
    "importance_sgd": _importance,
}


def machine():
    """What the pinned numbers depend on: the kernels' instruction set."""
    import sksketch

    return {"isa": sksketch.show_config("dicts")["simd"]["active_isa"]}


def main():
    arrays = {"machine": np.array(json.dumps(machine()))}
    for name, run in CASES.items():
        for key, value in run().items():
            arrays[f"{name}/{key}"] = value
    DATA.parent.mkdir(exist_ok=True)
    np.savez_compressed(DATA, **arrays)
    print(f"wrote {DATA} ({DATA.stat().st_size} bytes) for {machine()}")


if __name__ == "__main__":
    main()
