"""Map an external set's classes onto a model's classes by name (or an explicit mapping).

Classes the model lacks are left out and reported; a mapping that names a class the model does
not have, or that the data does not have, is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from leukodx.data.dataset import DatasetIndex
from leukodx.errors import ConfigError


@dataclass
class ClassMap:
    mapping: dict[str, str]      # data class -> model class
    dropped: dict[str, int]      # data classes the model lacks -> images left out

    def describe(self) -> str:
        same = all(k == v for k, v in self.mapping.items())
        s = "classes mapped by name" if same else "classes mapped: " + ", ".join(
            f"{k} -> {v}" for k, v in self.mapping.items())
        if self.dropped:
            s += "; left out (the model lacks them): " + ", ".join(f"{k} ({n} images)" for k, n in self.dropped.items())
        return s


def map_classes(index: DatasetIndex, model_classes: list[str],
                mapping: dict[str, str] | None = None) -> tuple[DatasetIndex, ClassMap]:
    """The index relabelled into the model's class list (label = position in `model_classes`)."""
    lower = {c.lower(): c for c in model_classes}
    if mapping is None:
        mapping = {c: lower[c.lower()] for c in index.classes if c.lower() in lower}
    bad_src = sorted(set(mapping) - set(index.classes))
    bad_dst = sorted(set(mapping.values()) - set(model_classes))
    if bad_src or bad_dst:
        raise ConfigError("class map names unknown classes: "
                          + "; ".join(x for x in (f"not in the data: {', '.join(bad_src)}" if bad_src else "",
                                                  f"not in the model: {', '.join(bad_dst)}" if bad_dst else "") if x))
    if not mapping:
        raise ConfigError(f"no class of the data ({', '.join(index.classes)}) matches the model's "
                          f"({', '.join(model_classes)}); give a mapping")
    counts = index.counts()
    dropped = {c: counts[c] for c in index.classes if c not in mapping}
    recs = [replace(r, label=model_classes.index(mapping[index.classes[r.label]]))
            for r in index.records if index.classes[r.label] in mapping]
    return replace(index, classes=list(model_classes), records=recs), ClassMap(dict(mapping), dropped)
