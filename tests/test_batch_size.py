"""The memory model against real measurements, the cap arithmetic, its cache, the preview's table, OOM back-off."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from ocr.training import batch_size as bs
from ocr.training import memory
from ocr.training.batch_size import batch_cap, cap_table, halve, initial_plan, plan_batch
from ocr.training.build import build, build_model
from ocr.training.memory import Footprint, fit, footprint, random_batch, saved_bytes
from test_train import compose_train

SMALL = ["models.encoder.model_name=hrnet_w18_small", "models.encoder.pretrained=false"]


@pytest.fixture(scope="module")
def small_dbnet() -> tuple[Any, Any, dict[str, Any]]:
    cfg = compose_train(SMALL)
    return build_model(cfg.models).train(), build(cfg.models.loss), OmegaConf.to_container(cfg.models, resolve=True)


@pytest.fixture(scope="module")
def fitted(small_dbnet) -> dict[bool, Footprint]:
    """hrnet_w18_small's footprint from 96 and 160 px, in fp32 (False) and bf16-mixed (True)."""
    model, loss, _ = small_dbnet
    return {mixed: fit(model, loss, mixed, sizes=(96, 160)) for mixed in (False, True)}


@pytest.mark.parametrize("mixed", [False, True])
def test_saved_bytes_at_a_larger_size_and_batch_are_predicted_within_10_percent(small_dbnet, fitted, mixed) -> None:
    model, loss, _ = small_dbnet
    for size, batch in ((256, 1), (96, 3)):
        measured, predicted = saved_bytes(model, loss, size, mixed, batch), fitted[mixed].saved(size, batch)
        print(f"{'bf16-mixed' if mixed else 'fp32'} {size} px x {batch}: predicted {predicted:.0f} measured {measured}")
        assert predicted == pytest.approx(measured, rel=0.10)


def test_autocast_halves_the_activations_it_runs_in_bf16(fitted) -> None:
    full, mixed = fitted[False], fitted[True]
    assert 0.4 < mixed.per_pixel / full.per_pixel < 0.75  # measured, not assumed: some ops stay in fp32
    assert mixed.fixed > full.fixed + 1.5 * full.params  # autocast's bf16 copy of the weights


def test_training_bytes_count_weights_gradients_adam_state_and_activations() -> None:
    model = Footprint(params=10**7, fixed=5e6, per_pixel=1000)
    assert model.training(1000, 3) == 4 * 4 * 10**7 + 5e6 + 3 * 1000 * 1000**2


def test_cap_is_the_largest_power_of_two_under_free_memory_less_the_margin() -> None:
    model = Footprint(params=10**7, fixed=0, per_pixel=1000)  # 0.16 GB fixed + 1 GB per image at 1000 px
    assert batch_cap(model, 1000, 9.5e9, margin=0.0) == 8  # 8.16 GB fits, 16.16 does not
    assert batch_cap(model, 1000, 9.5e9, margin=0.15) == 4  # 8.075 GB budget: 8 images no longer fit
    assert batch_cap(model, 500, 9.5e9, margin=0.15) == 16  # a quarter of the pixels: 32 x 0.25 GB > 8.075
    assert batch_cap(Footprint(params=10**9, fixed=0, per_pixel=1000), 1000, 9.5e9) == 1  # nothing fits: 1
    assert bs.MARGIN == 0.15


def test_measurement_is_cached_per_model_and_precision_and_keeps_the_rng(small_dbnet, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(memory.CACHE_ENV, str(tmp_path / "memory.json"))
    _, _, models = small_dbnet
    said: list[str] = []
    state = torch.get_rng_state()
    first = footprint(models, "32-true", said.append)
    assert torch.equal(torch.get_rng_state(), state), "a run's seeded weights must not depend on the cache"
    assert len(said) == 1 and "measuring" in said[0]
    monkeypatch.setattr(memory, "fit", lambda *a, **k: pytest.fail("measured again"))
    assert footprint(models, "32-true", said.append) == first and len(said) == 1
    stored = json.loads((tmp_path / "memory.json").read_text())
    assert list(stored) == [memory.cache_key(models, "32-true")] and "hrnet_w18_small fp32" in list(stored)[0]
    assert memory.cache_key(models, "bf16-mixed") != memory.cache_key(models, "32-true")
    narrow = {**models, "decoder": {**models["decoder"], "inner_channels": 64}}
    assert memory.cache_key(narrow, "32-true") != memory.cache_key(models, "32-true")


def resident(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak since the last reset) of this process, in bytes."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak RSS")
def test_peak_rss_of_a_training_step_is_close_to_the_prediction(small_dbnet, fitted) -> None:
    model, loss, _ = small_dbnet
    found = fitted[False]
    optimizer = torch.optim.Adam(model.parameters())

    def step(size: int, batch: int) -> None:
        images, targets = random_batch(batch, size)
        loss(model(images), targets)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(64, 1)  # oneDNN and Adam's state set up: weights and optimizer state are there before the step measured
    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from the current RSS
    before = resident("VmRSS")
    step(256, 2)
    growth, predicted = resident("VmHWM") - before, found.saved(256, 2) + 4 * found.params  # activations, gradients
    print(f"peak RSS growth {growth / 2**20:.0f} MiB, predicted activations + gradients {predicted / 2**20:.0f} MiB")
    assert 0.8 * predicted < growth < 1.5 * predicted  # the allocator and backward's transient gradients on top


def fake_footprint(models: dict[str, Any], precision: Any, say=None) -> Footprint:
    width = int(models["encoder"]["model_name"].removeprefix("hrnet_w"))
    return Footprint(params=width * 10**6, fixed=0, per_pixel=(width * 100) / (2 if precision == "bf16-mixed" else 1))


def test_preview_table_has_a_row_per_model_size_and_swept_precision(monkeypatch) -> None:
    monkeypatch.setattr(bs, "footprint", fake_footprint)
    params = {"models.encoder.model_name": {"values": ["hrnet_w18", "hrnet_w48"]},
              "image_size": {"values": [640, 1024]}, "trainer.precision": {"values": ["32-true", "bf16-mixed"]},
              "batch_size": {"values": [4, 16]}}
    table = cap_table(params, None, None).splitlines()
    assert "no CUDA GPU visible" in table[0] and "24 GiB" in table[1] and "80 GiB" in table[1]
    assert len(table) == 2 + 2 * 2 * 2
    w18 = [line.split() for line in table[2:] if "hrnet_w18" in line]
    # hrnet_w18 at 640 px: 0.29 GB fixed + 0.74 GB per image -> 16 on 24 GiB, 64 on 80 GiB; bf16 doubles both
    assert w18[0] == ["hrnet_w18", "640", "32-true", "0.27", "0.69", "16", "64"]
    assert w18[2][:3] == ["hrnet_w18", "640", "bf16-mixed"] and w18[2][-2:] == ["32", "128"]
    gpu = cap_table(params, 40.0, "Some GPU").splitlines()
    assert "Some GPU (40.0 GiB free)" in gpu[0] and "bs 4 ->" in gpu[1] and "bs 16 ->" in gpu[1]
    assert gpu[2].split()[-3:] == ["32", "4x1", "16x1"]  # hrnet_w18, 640, fp32: 32 fit in 34 GiB


def test_a_fixed_decoder_override_reaches_the_model_the_table_measures(monkeypatch) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(bs, "footprint", lambda models, precision, say=None: seen.append(models) or Footprint(1, 0, 1))
    cap_table({"models.decoder.inner_channels": {"value": 64}, "image_size": {"value": 160}}, None, None)
    assert seen[0]["decoder"]["inner_channels"] == 64 and seen[0]["encoder"]["model_name"] == "hrnet_w18"


def test_initial_plan_caps_on_a_gpu_only(monkeypatch) -> None:
    monkeypatch.setattr(bs, "footprint", fake_footprint)
    monkeypatch.setattr(bs, "visible_gpu", lambda devices=None: (10.0, "Some GPU"))
    cfg = compose_train(["batch_size=32", "image_size=1024"])
    assert initial_plan(cfg) == bs.BatchPlan(32, 4, 8)  # hrnet_w18: 0.29 GB + 1.89 GB per image in 9.1 GB
    cfg.trainer.accelerator = "cpu"
    assert initial_plan(cfg) == bs.BatchPlan(32, 32, 1)


@pytest.mark.parametrize("requested,cap,used,acc", [(8, None, 8, 1), (8, 2, 2, 4), (4, 16, 4, 1), (6, 4, 4, 2)])
def test_plan(requested: int, cap: int | None, used: int, acc: int) -> None:
    plan = plan_batch(requested, cap)
    assert (plan.used, plan.accumulate) == (used, acc)
    assert plan.used * plan.accumulate >= requested


def test_halving_keeps_effective_batch_until_one() -> None:
    plan = plan_batch(16, None)
    seen = []
    while plan is not None:
        seen.append((plan.used, plan.accumulate, plan.used * plan.accumulate))
        plan = halve(plan)
    assert seen == [(16, 1, 16), (8, 2, 16), (4, 4, 16), (2, 8, 16), (1, 16, 16)]


def test_bad_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_batch(0, None)


def test_halving_keeps_the_validation_cap() -> None:
    assert halve(bs.BatchPlan(8, 8, 1, val_cap=2)) == bs.BatchPlan(8, 4, 2, val_cap=2)


def test_a_rank_started_by_rank_zero_runs_its_plan(monkeypatch) -> None:
    cfg = compose_train(["batch_size=32", "image_size=1024", "trainer.accelerator=cpu"])
    with bs.shared_with_ranks(bs.BatchPlan(32, 4, 8)):
        assert initial_plan(cfg) == bs.BatchPlan(32, 32, 1), "rank zero itself plans"
        monkeypatch.setattr(os, "getppid", os.getpid)  # as the ranks Lightning starts see rank zero
        assert initial_plan(cfg) == bs.BatchPlan(32, 4, 8)
    assert bs.PLAN_ENV not in os.environ and initial_plan(cfg) == bs.BatchPlan(32, 32, 1)


@pytest.fixture
def three_cards(monkeypatch) -> None:
    """torch sees three CUDA cards with 20, 6 and 30 GiB free."""
    free = {0: 20, 1: 6, 2: 30}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (free[i] * 2**30, 40 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"card {i}")
    monkeypatch.delenv("LOCAL_RANK", raising=False)


@pytest.mark.parametrize("devices,expected", [
    (None, (20.0, "card 0")), (1, (20.0, "card 0")), (2, (6.0, "card 1")), ("auto", (6.0, "card 1")),
    (-1, (6.0, "card 1")), ([2], (30.0, "card 2")), ([0, 2], (20.0, "card 0")), ("0,2", (20.0, "card 0")),
])
def test_a_run_is_planned_for_the_card_with_least_free_memory(three_cards, devices, expected) -> None:
    assert bs.visible_gpu(devices) == expected


def test_a_rank_started_by_an_external_launcher_measures_its_own_card(three_cards, monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert bs.visible_gpu(3) == (30.0, "card 2")


def test_rank_zero_plans_a_multi_device_run_for_its_fullest_card(three_cards, monkeypatch) -> None:
    monkeypatch.setattr(bs, "footprint", fake_footprint)
    model = fake_footprint({"encoder": {"model_name": "hrnet_w18"}}, "32-true")
    one = compose_train(["batch_size=32", "image_size=1024"])
    two = compose_train(["batch_size=32", "image_size=1024", "trainer.devices=2"])
    assert initial_plan(one).used == batch_cap(model, 1024, 20 * 2**30)
    assert initial_plan(two).used == batch_cap(model, 1024, 6 * 2**30) < initial_plan(one).used
