"""Mixed precision and channels-last layout on the CPU: same outputs, float32 losses, the same metrics path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ocr.models.loss import DBLoss
from ocr.training.build import build_model
from ocr.training.run import train
from test_train import compose_train, synthetic_dir, tiny_overrides  # noqa: F401 (a fixture)

SMALL = ["models.encoder.model_name=hrnet_w18_small", "models.encoder.pretrained=false"]


def test_channels_last_gives_the_default_layouts_outputs() -> None:
    default = build_model(compose_train(SMALL).models).eval()
    nhwc = build_model(compose_train([*SMALL, "models.channels_last=true"]).models).eval()
    assert not default.encoder.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.encoder.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    nhwc.load_state_dict(default.state_dict())
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = default(images, with_threshold=True), nhwc(images, with_threshold=True)
    assert want.keys() == got.keys() == {"prob_logits", "thresh", "binary_logits"}
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_bf16_mixed_trains_and_validates_on_the_cpu_with_float32_losses(
        tmp_path: Path, synthetic_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    seen: list[tuple[bool, torch.dtype, list[torch.Tensor]]] = []
    real_loss = DBLoss.forward

    def recording_loss(self: DBLoss, pred: dict, batch: dict) -> dict:
        losses = real_loss(self, pred, batch)
        seen.append((torch.is_autocast_enabled("cpu"), pred["prob_logits"].dtype, list(losses.values())))
        return losses

    monkeypatch.setattr(DBLoss, "forward", recording_loss)
    overrides = tiny_overrides(synthetic_dir, **{"trainer.precision": "bf16-mixed", "trainer.max_epochs": 1,
                                                 "models.channels_last": "true", "cache_val_maps": "true"})
    metrics = train(compose_train(overrides), tmp_path / "run")
    assert seen and all(autocast and dtype == torch.bfloat16 for autocast, dtype, _ in seen)  # the model ran in bf16
    losses = [loss for *_, values in seen for loss in values]
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses)
    for key in ("val/cleval_hmean", "val/cleval_recall", "val/cleval_precision", "val/loss"):
        assert math.isfinite(metrics[key]), key
    assert (tmp_path / "run" / "val_cache").is_dir()  # the same metrics path: maps cached from the bf16 model
