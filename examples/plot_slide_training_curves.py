"""
SLIDE against the exact softmax: training curves and precision over time
========================================================================

:class:`~sksketch.SLIDEClassifier` computes only the output neurons its hash
tables select for each example. With ``min_active_labels`` at least the number
of labels, the same network is trained with the exact (dense) softmax instead.
We train both on a generated extreme-classification problem, record their
training loss and precision at 1 on held-out rows after every epoch with
:func:`sksketch.plot.training_history`, and plot precision against training
time, the fair comparison for methods whose epochs cost different amounts.

The problem is kept small so the example runs in seconds. At 10,000 labels
an exact-softmax epoch costs only a few times a SLIDE epoch, and the exact
softmax reaches a higher precision per epoch (it updates every label at every
step); the gap in cost per epoch grows with the number of labels (at 100,000
labels, ``sksketch demo`` measures SLIDE's training about 20 times faster).
"""

import matplotlib.pyplot as plt

from sksketch import SLIDEClassifier
from sksketch.datasets import make_extreme_classification
from sksketch.plot import plot_precision_vs_time, plot_training_curves, training_history

# %%
# A problem with 10,000 labels with power-law frequencies
# -------------------------------------------------------

n_train, n_test, n_labels = 2500, 800, 10_000
X, Y = make_extreme_classification(n_train + n_test, 4000, n_labels,
                                   avg_labels_per_sample=3, random_state=0)
X_train, Y_train, X_test, Y_test = X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]

# %%
# Train both, one epoch at a time
# -------------------------------

params = dict(hidden_layer_size=64, learning_rate=3e-3, random_state=0)
models = {
    "SLIDE": SLIDEClassifier(min_active_labels=300, n_tables=16, n_buckets_log2=12, **params),
    "exact softmax": SLIDEClassifier(min_active_labels=n_labels, **params),
}
histories = {
    name: training_history(model, X_train, Y_train, X_test, Y_test, n_epochs=5, k=(1, 5))
    for name, model in models.items()
}
for name, history in histories.items():
    print(f"{name:>14}: {history['time'][-1]:5.1f} s, P@1 {history['P@1'][-1]:.3f}, "
          f"P@5 {history['P@5'][-1]:.3f}")

# %%
# Loss per epoch, and precision against training time
# ---------------------------------------------------

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
plot_training_curves(models, ax=left)
left.set_title("training loss (each over its own active set)")
plot_precision_vs_time(histories, k=1, ax=right)
right.set_title("precision@1 on held-out rows")
fig.tight_layout()
plt.show()

# %%
# Each SLIDE epoch is cheaper, so its curve starts further left; read off the
# precision each method reaches within the same training time, and note that
# the loss curves are not comparable in level: SLIDE's is a sampled softmax
# over its active set, the exact one is over all labels.
