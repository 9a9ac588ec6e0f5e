"""Datasets and views: bundled sets, party files aligned by ID, and image directories."""

from apfed.data.bundled import BUNDLED, load_bundled
from apfed.data.files import align_tables, load_party_files, read_party_file
from apfed.data.images import IMAGE_SETS, load_image_dir
from apfed.data.views import MultiViewDataset, PartyData, Preprocessor, View, image_strips, split_parties

__all__ = [
    "BUNDLED",
    "IMAGE_SETS",
    "MultiViewDataset",
    "PartyData",
    "Preprocessor",
    "View",
    "align_tables",
    "image_strips",
    "load_bundled",
    "load_image_dir",
    "load_party_files",
    "read_party_file",
    "split_parties",
]
