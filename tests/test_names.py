"""The light vocabulary of frugalvision.names is the one the library implements (the CLI offers it without torch)."""

from __future__ import annotations

from frugalvision import names
from frugalvision.analysis.counting import ENERGY_TABLES
from frugalvision.data import DATASETS
from frugalvision.layers.create import _LAYERS


def test_every_listed_name_is_implemented_and_nothing_else() -> None:
    assert tuple(DATASETS) == names.DATASET_NAMES
    assert tuple(ENERGY_TABLES) == names.ENERGY_TABLE_NAMES
    assert set(_LAYERS) == set(names.CONV_TYPES)

