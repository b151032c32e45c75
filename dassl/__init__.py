"""A Dassl.pytorch-compatible engine for prompt learning (import paths follow upstream 0.6.3)."""

__version__ = "0.6.3"
