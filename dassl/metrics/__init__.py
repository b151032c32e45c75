"""Metrics: top-k accuracy and distance matrices."""

from .accuracy import compute_accuracy
from .distance import compute_distance_matrix, cosine_distance, euclidean_squared_distance

__all__ = [
    "compute_accuracy",
    "compute_distance_matrix",
    "cosine_distance",
    "euclidean_squared_distance",
]
