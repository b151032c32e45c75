"""Data pipeline: DataManager, DatasetWrapper (upstream import paths)."""

from .data_manager import DataManager, DatasetWrapper

__all__ = ["DataManager", "DatasetWrapper"]
