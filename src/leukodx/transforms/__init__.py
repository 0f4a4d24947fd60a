"""Preprocessing (deterministic, also at prediction) and augmentation (training only)."""
from leukodx.transforms.augment import PRESETS, build_augment
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig, cell_mask, otsu_threshold

__all__ = ["PRESETS", "Preprocess", "PreprocessConfig", "build_augment", "cell_mask", "otsu_threshold"]
