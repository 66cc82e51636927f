"""Data sets for scratchgan: IDX files, named data sets (MNIST, Fashion-MNIST,
EMNIST letters), verified downloads, a bundled offline MNIST sample, folders of
your own images (PNG, JPEG, .npy/.npz; grey or RGB) and a generator of coloured
shapes to try them with."""
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
from .folder import image_folder
from .idx import DataError, read_idx, write_idx
from .shapes import make_shapes_folder

__all__ = [
    "Dataset", "DataError", "DataNotFound", "load_dataset", "dataset_names", "batches",
    "read_idx", "write_idx", "cache_dir", "download_file", "verify_file", "REGISTRY", "BUNDLED_DIR",
    "image_folder", "make_shapes_folder",
]
