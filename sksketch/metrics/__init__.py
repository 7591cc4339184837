"""Metrics for extreme and zero-shot classification, and scorers for model selection."""

from ._ranking import (
    label_propensity,
    ndcg_at_k,
    precision_at_k,
    psp_at_k,
    recall_at_k,
)
from ._scorer import make_topk_scorer
from ._zeroshot import GZSLScores, gzsl_scores, per_class_accuracy

__all__ = [
    "GZSLScores",
    "gzsl_scores",
    "label_propensity",
    "make_topk_scorer",
    "ndcg_at_k",
    "per_class_accuracy",
    "precision_at_k",
    "psp_at_k",
    "recall_at_k",
]
