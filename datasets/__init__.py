"""Datasets in CoOp's on-disk layout. Importing this package registers them in DATASET_REGISTRY."""
