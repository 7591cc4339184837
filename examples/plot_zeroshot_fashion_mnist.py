"""
Zero-shot classification of Fashion-MNIST with attribute soft labels
=====================================================================

Three Fashion-MNIST classes (Pullover, Sandal, Ankle boot) are *unseen*: the
model never sees one of their images, only a row of attributes per class
("upper body", "long sleeves", "heel", ...). :class:`~sksketch.ZeroShotSoftLabelClassifier`
scores every class by the dot product of a learned image embedding with the
class's attributes, and trains on *soft labels*: each seen image lends a share
``unseen_mass`` of its target to the unseen classes whose attributes resemble
its own class's. By default a second network learns the hard labels and the
model ranks by the mean of both networks' calibrated scores: the two make
different mistakes.

A network trained on seen classes scores them above the unseen ones, so
calibrated stacking subtracts a penalty from the seen classes' scores; by
default (``calibration_gamma="auto"``) ``fit`` chooses it by holding seen
classes out to play unseen. We compare the default model with a single
network on hard labels, and draw the seen / unseen accuracy trade-off that
the penalty moves along, with the point ``fit`` chose.
Set ``SKSKETCH_DATA_DIR`` to the folder holding ``fashion-mnist/``; the
example exits with a message when the data is absent.
"""

import gzip
import os
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sksketch import ZeroShotSoftLabelClassifier
from sksketch.metrics import gzsl_scores

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
data_dir = Path(os.environ.get("SKSKETCH_DATA_DIR", here.parents[1] / "shared" / "data"))
folder = data_dir / "fashion-mnist"
if not (folder / "attributes.csv").is_file():
    print(f"Fashion-MNIST not found in {folder}; set SKSKETCH_DATA_DIR to run this example.")
    sys.exit(0)

# %%
# Data: images, labels and the class attribute table
# ---------------------------------------------------


def read_idx(name, offset):
    with gzip.open(folder / name, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


X_train = read_idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:30000]
y_train = read_idx("train-labels-idx1-ubyte.gz", 8).astype(int)[:30000]
X_test = read_idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
y_test = read_idx("t10k-labels-idx1-ubyte.gz", 8).astype(int)
table = [line.split(",") for line in (folder / "attributes.csv").read_text().splitlines()]
names = [row[1] for row in table[1:]]
attributes = np.array([[float(v) for v in row[2:]] for row in table[1:]])

unseen = np.array([2, 5, 9])
seen_rows = ~np.isin(y_train, unseen)
print(f"unseen classes: {[names[c] for c in unseen]}; "
      f"{seen_rows.sum()} training images of the 7 seen classes")

# %%
# The default model against hard labels
# --------------------------------------
# Pixels are scaled and reduced by PCA inside the pipeline; the classifier's
# ``class_attributes`` has one row per class, so classes 2, 5 and 9, absent
# from ``y``, are the unseen ones. Both models choose their penalty in
# ``fit`` (``calibration_gamma="auto"``).


# The default ten epochs: the optimiser has not fully converged.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def model(**params):
    return make_pipeline(
        FunctionTransformer(lambda X: X / 255.0),
        PCA(n_components=64, random_state=0),
        ZeroShotSoftLabelClassifier(attributes, random_state=0, **params),
    )


soft = model().fit(X_train[seen_rows], y_train[seen_rows])
hard = model(unseen_mass=0.0).fit(X_train[seen_rows], y_train[seen_rows])

for label, pipe in (("default (soft + hard)", soft), ("hard labels", hard)):
    s = gzsl_scores(y_test, pipe.predict(X_test), unseen_classes=unseen)
    pipe.set_params(zeroshotsoftlabelclassifier__prediction_scope="unseen")
    rows = np.isin(y_test, unseen)
    zsl = pipe.score(X_test[rows], y_test[rows])
    pipe.set_params(zeroshotsoftlabelclassifier__prediction_scope="all")
    print(f"{label}: calibration_gamma_={pipe[-1].calibration_gamma_:.2f}; "
          f"ZSL accuracy {zsl:.3f}; GZSL S={s.seen:.3f} U={s.unseen:.3f} H={s.harmonic:.3f}")

# %%
# The seen / unseen trade-off and the chosen penalty
# --------------------------------------------------
# Setting ``calibration_gamma`` to a number after fitting moves along the
# trade-off without retraining: a larger penalty sends more predictions to
# the unseen classes. The star is the penalty ``fit`` chose from the seen
# classes alone; the curve is measured on the test images, which ``fit``
# never saw, so the best point on it is known only in hindsight.

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for label, pipe in (("default (soft + hard)", soft), ("hard labels", hard)):
    chosen = pipe[-1].calibration_gamma_
    # from no penalty to twice the chosen one; the chosen one is index 20
    sweep = chosen * np.linspace(0, 2, 41)
    curve = []
    for g in sweep:
        pipe.set_params(zeroshotsoftlabelclassifier__calibration_gamma=g)
        curve.append(gzsl_scores(y_test, pipe.predict(X_test), unseen_classes=unseen))
    pipe.set_params(zeroshotsoftlabelclassifier__calibration_gamma="auto")
    curve = np.array(curve)
    at = 20
    best = curve[:, 2].argmax()
    print(f"{label}: H={curve[at, 2]:.3f} at the chosen {chosen:.2f}; "
          f"best in hindsight H={curve[best, 2]:.3f} at {sweep[best]:.2f}")
    line = axes[0].plot(curve[:, 1], curve[:, 0], marker=".", label=label)[0]
    axes[0].plot(curve[at, 1], curve[at, 0], marker="*", markersize=15,
                 color=line.get_color())
    axes[1].plot(sweep / chosen, curve[:, 2], label=label)
axes[0].set(xlabel="unseen accuracy U", ylabel="seen accuracy S",
            title="GZSL trade-off (star: chosen in fit)")
axes[1].axvline(1, color="gray", linestyle=":")
axes[1].set(xlabel="calibration_gamma / calibration_gamma_", ylabel="harmonic mean H",
            title="H around the chosen penalty")
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()
