"""Preprocessing (deterministic, also at prediction) and augmentation (training only).
Import from the submodules: `transforms.preprocess` needs no torch, `transforms.augment` does."""
