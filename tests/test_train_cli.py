"""`python -m ocr.train`: overrides are checked against the config before Hydra or Lightning start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ocr

from ocr.config.checks import check_value
from ocr.train import check_overrides
from ocr.utils.compat import lightning_precisions
from ocr.utils.errors import UserError

CONFIGS = Path(ocr.__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["image_sze=256"], "'image_sze' is not a key of the Hydra config"),
        (["optimizer=adamm"], "'adamm' is not an option of config group 'optimizer'"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' must be an integer"),
        (["trainer.precision=bogus"], "trainer.precision='bogus' is not a Lightning precision"),
        (["image_size=250"], "image_size=250 must be a multiple of 32"),
        (["batch_size=2", "models.encoder.model_name=hrnet_w81"], "model_name='hrnet_w81' is not a timm model"),
        (["models.loss.negative_ratio=-1"], "models.loss.negative_ratio=-1 must be > 0 (hard negatives per positive"),
        (["models.head.postprocess.thresh=1"], "models.head.postprocess.thresh=1 must be in [0, 1); DBNet uses 0.3"),
        (["collate_fn.shrink_ratio=1.5"], "collate_fn.shrink_ratio=1.5 must be in [0, 1); DBNet uses 0.4"),
        (["collate_fn.thresh_min=0.8"], "collate_fn.thresh_min=0.8, thresh_max=0.7 must satisfy"),
        (["data.limit_train=0"], "data.limit_train=0 must be null (every image) or an integer >= 1"),
        (["trainer.strategy=ddp_spawn"], "trainer.strategy='ddp_spawn' trains in worker processes whose epochs"),
    ],
)
def test_bad_overrides_are_one_line(words: list[str], expected: str) -> None:
    with pytest.raises(UserError) as err:
        check_overrides(words)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_what_hydra_handles_itself_is_left_to_it() -> None:
    check_overrides(["+extra=1", "~log_val_images", "image_size=256,512", "hydra.run.dir=/tmp/x"])
    check_overrides(["--cfg", "job", "image_sze=256"])  # Hydra's own flags: no second guessing
    check_overrides(["image_size=[1,"])  # malformed: Hydra reports it
    check_overrides(["image_size=640", "trainer.max_epochs=-1", "trainer.precision=bf16-mixed", "optimizer=adamw"])
    check_overrides(["~logger", "trainer.max_epochs=null", "trainer.precision=null", "data.limit_train=null"])
    with pytest.raises(UserError, match="a config group cannot be null \\(Hydra drops a group with ~logger"):
        check_overrides(["logger=null"])


def test_rules_match_lightning() -> None:
    assert {"32-true", "bf16-mixed", "16-mixed", 32} <= set(lightning_precisions())
    check_value("trainer.precision", 32)
    check_value("not.a.ruled.key", object())
    with pytest.raises(UserError, match="batch_size=0 must be >= 1"):
        check_value("batch_size", 0)


def test_the_cli_stops_in_a_second_with_the_closest_key(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ocr.train", "image_sze=256"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ocr.train: error: command line: parameter 'image_sze' is not a key of the Hydra config "
        f"{CONFIGS / 'train.yaml'} (nor a config group) (did you mean image_size?)"
    ]
    assert not (tmp_path / "outputs").exists()


def test_timm_names_are_cached_per_version(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    from ocr.models import names

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    names.timm_model_names.cache_clear()
    try:
        listed = names.timm_model_names()
        assert listed == frozenset(timm.list_models())
        assert names.cache_file().is_file() and timm.__version__ in names.cache_file().name
        names.timm_model_names.cache_clear()
        assert names.timm_model_names() == listed  # read back from the file
        assert names.is_timm_model("hrnet_w18.ms_aug_in1k") and not names.is_timm_model("hrnet_w19")
    finally:
        names.timm_model_names.cache_clear()


def test_a_run_config_names_its_data_by_absolute_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from ocr.training.run import with_absolute_data_paths

    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create({"dataset_base_path": "rel/data", "data": {"dataset_base_path": "${dataset_base_path}",
                                                                      "synthetic": {"dir": "data/synthetic"}}})
    out = with_absolute_data_paths(cfg)
    assert out.dataset_base_path == out.data.dataset_base_path == str(tmp_path / "rel" / "data")
    assert out.data.synthetic.dir == str(tmp_path / "data" / "synthetic")
    assert cfg.data.synthetic.dir == "data/synthetic"  # the run's own config is unchanged
    empty = with_absolute_data_paths(OmegaConf.create({"dataset_base_path": "", "data": {"dataset_base_path": None}}))
    assert empty.dataset_base_path == "" and empty.data.dataset_base_path is None


def test_a_config_without_an_optimizer_or_image_size_is_one_line() -> None:
    from hydra import compose, initialize_config_dir

    from ocr.config.checks import check_config

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["~optimizer", "image_size=null"])
    with pytest.raises(UserError, match="image_size=None must be an integer"):
        check_config(cfg)
    cfg.image_size = 256
    with pytest.raises(UserError, match="no optimizer configured: training needs one"):
        check_config(cfg)
