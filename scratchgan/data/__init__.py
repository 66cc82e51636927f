"""Data sets for scratchgan: IDX files, named data sets (MNIST, Fashion-MNIST,
EMNIST letters), verified downloads and a bundled offline MNIST sample."""
from .datasets import (
    BUNDLED_DIR,
    REGISTRY,
    DataNotFound,
    Dataset,
    batches,
    cache_dir,
    dataset_names,
    download_file,
    load_dataset,
    verify_file,
)
from .idx import DataError, read_idx, write_idx

__all__ = [
    "Dataset", "DataError", "DataNotFound", "load_dataset", "dataset_names", "batches",
    "read_idx", "write_idx", "cache_dir", "download_file", "verify_file", "REGISTRY", "BUNDLED_DIR",
]
