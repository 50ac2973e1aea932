"""Datasets for aevb: the built-in sets (read from their original formats) and user files."""

from .builtin import BUILTIN, default_data_dir
from .dataset import Dataset
from .load import load_dataset

__all__ = ["BUILTIN", "Dataset", "default_data_dir", "load_dataset"]
