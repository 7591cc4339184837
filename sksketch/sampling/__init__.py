"""Which training rows each mini-batch holds: uniform, loss-sketch and exact-loss sampling.

Every sksketch estimator trains through one loop, :func:`run_epoch`, over the
batches a sampler draws (see :class:`BaseSampler` for the protocol).
:class:`NWSketchSampler` draws rows in proportion to a Nadaraya-Watson sketch
of their loss, learned from the losses training computes anyway, and weights
them so the gradient stays unbiased.
"""

from ._base import BaseSampler, UniformSampler, check_sampler
from ._loop import run_epoch
from ._nw import ExactLossSampler, NadarayaWatsonSketch, NWSketchSampler

__all__ = [
    "BaseSampler",
    "ExactLossSampler",
    "NWSketchSampler",
    "NadarayaWatsonSketch",
    "UniformSampler",
    "check_sampler",
    "run_epoch",
]
