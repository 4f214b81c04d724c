"""The three experiments' data: the HDF5 files' layouts and their checks (`layouts`,
`checks`), preprocessing (`preprocessing`), and the embedded data used when no file is
given (`embedded`; the 4-grams are built by `ngrams`). Nothing here writes a file.
"""

from .checks import DataError, require_rows, unholdable
from .embedded import default_activity, default_ngrams, default_patches
from .layouts import ActivityData, NgramData, is_folder, load_activity, load_ngrams, load_patches
from .preprocessing import preprocess_patches, quick_subset, split_validation

__all__ = [
    "ActivityData",
    "DataError",
    "NgramData",
    "default_activity",
    "default_ngrams",
    "default_patches",
    "is_folder",
    "load_activity",
    "load_ngrams",
    "load_patches",
    "preprocess_patches",
    "quick_subset",
    "require_rows",
    "split_validation",
    "unholdable",
]
