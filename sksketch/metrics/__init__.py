"""Metrics for extreme classification, and scorers for model selection."""

from ._ranking import (
    label_propensity,
    ndcg_at_k,
    precision_at_k,
    psp_at_k,
    recall_at_k,
)
from ._scorer import make_topk_scorer

__all__ = [
    "label_propensity",
    "make_topk_scorer",
    "ndcg_at_k",
    "precision_at_k",
    "psp_at_k",
    "recall_at_k",
]
