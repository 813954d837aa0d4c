from __future__ import annotations

import pytest

from cnnkit.config import DataConfig, TrainConfig, from_mapping, split_options
from cnnkit.errors import ConfigError


def test_size_forms_are_width_by_height() -> None:
    assert DataConfig(size="64x92").size == (64, 92)
    assert DataConfig(size=[64, 92]).size == (64, 92)
    assert DataConfig(size=(64, 92), grayscale=True).channels == 1
    with pytest.raises(ConfigError, match="WxH"):
        DataConfig(size="big")


def test_unknown_key_suggests_and_values_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"unknown TrainConfig key 'batchsize'\. Did you mean 'batch_size'\?"):
        from_mapping(TrainConfig, {"batchsize": 3})
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
        TrainConfig(schedule="cosin")
    assert from_mapping(TrainConfig, {"epochs": 3}).epochs == 3


def test_split_options_sorts_keys() -> None:
    data, train, rest = split_options({"size": (8, 8), "epochs": 2, "colour": 1})
    assert data == {"size": (8, 8)} and train == {"epochs": 2} and rest == {"colour": 1}
