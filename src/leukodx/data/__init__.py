"""Data: indexes of image files, named recipes, grouped splits, audits, synthetic demo data."""
from leukodx.data.dataset import DatasetIndex, ImageRecord, from_folder, from_manifest, write_manifest
from leukodx.data.images import load_image
from leukodx.data.recipes import load_dataset, load_recipe, recipe_names
from leukodx.data.splits import Split, check_split, make_split

__all__ = ["DatasetIndex", "ImageRecord", "Split", "check_split", "from_folder", "from_manifest", "load_dataset",
           "load_image", "load_recipe", "make_split", "recipe_names", "write_manifest"]
