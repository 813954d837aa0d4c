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
    with pytest.raises(ConfigError, match=r"train\.batchsize: unknown key\. Did you mean 'batch_size'\?"):
        from_mapping(TrainConfig, {"batchsize": 3})
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
        TrainConfig(schedule="cosin")
    assert from_mapping(TrainConfig, {"epochs": 3}).epochs == 3


def test_split_options_sorts_keys() -> None:
    data, train, rest = split_options({"size": (8, 8), "epochs": 2, "colour": 1})
    assert data == {"size": (8, 8)} and train == {"epochs": 2} and rest == {"colour": 1}


@pytest.mark.parametrize(("key", "value", "expected"), [("epochs", "3", "int"), ("batch_size", 2.7, "int"),
                                                        ("lr", "1e-3", "float"), ("quiet", "yes", "bool")])
def test_train_config_checks_types_where_it_is_made(key, value, expected) -> None:
    # Before: TrainConfig(epochs="3") was accepted and the scheduler multiplied a string.
    with pytest.raises(ConfigError, match=rf"train\.{key}: expected {expected}( or null)?\. Received: {value!r}"):
        TrainConfig(**{key: value})


def test_numbers_are_stored_as_their_field_type() -> None:
    import numpy as np

    cfg = TrainConfig(lr=1, epochs=np.int64(3))
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0 and type(cfg.epochs) is int
    with pytest.raises(ConfigError, match=r"data\.workers: expected int"):
        DataConfig(workers=1.5)


def test_fit_refuses_a_string_for_epochs_before_any_work(tmp_path) -> None:
    from cnnkit.train.fit import fit

    with pytest.raises(ConfigError, match=r"fit: train\.epochs: expected int"):
        fit("resnet18", None, epochs="3", out_dir=tmp_path / "run")  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_training_length_rule() -> None:
    from cnnkit.config import DEFAULT_MIN_EPOCHS, DEFAULT_MIN_STEPS

    small, large = TrainConfig(), TrainConfig()
    assert small.epochs_for(6) * 6 >= DEFAULT_MIN_STEPS  # 93 frames at batch 16: enough optimizer steps
    assert large.epochs_for(10_000) == DEFAULT_MIN_EPOCHS  # a large set: a sensible number of epochs
    assert TrainConfig(epochs=7).epochs_for(6) == 7 and TrainConfig(steps=61).epochs_for(6) == 11
    with pytest.raises(ConfigError, match="give one of epochs, steps or time"):
        TrainConfig(epochs=3, steps=10)
    assert TrainConfig().schedule == "cosine"


def test_auto_size_keeps_the_images_aspect(lips_dir) -> None:
    from cnnkit.data.sizing import auto_size, size_for_aspect
    from cnnkit.data.sources import read_annotations

    assert DataConfig().size is None and DataConfig(size="auto").size is None
    with pytest.raises(ConfigError, match="not been chosen"):
        DataConfig().frame  # noqa: B018
    assert auto_size(read_annotations(lips_dir / "via_project.json")) == (160, 120)  # 320x240 frames
    assert size_for_aspect(16 / 9) == (184, 104)
