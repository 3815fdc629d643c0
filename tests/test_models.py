"""Encoder channels from timm, decoder/head shapes, DB loss behaviour (empty images, autocast)."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import timm
import torch

from ocr.config.checks import check_combination
from ocr.models.dbnet import build_dbnet
from ocr.models.decoder import FPNDecoder
from ocr.models.encoder import TimmEncoder
from ocr.models.head import DBHead
from ocr.models.loss import DBLoss
from ocr.utils.errors import UserError


@pytest.mark.parametrize("name", ["hrnet_w18_small", "resnet18"])
def test_encoder_channels_come_from_timm(name: str) -> None:
    enc = TimmEncoder(name, pretrained=False)
    feats = enc(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == enc.channels
    assert [64 // f.shape[-1] for f in feats] == enc.body.feature_info.reduction() == [4, 8, 16, 32]


def test_unknown_model_lists_hrnet_names() -> None:
    with pytest.raises(UserError, match="hrnet_w64") as err:
        TimmEncoder("hrnet_w99", pretrained=False)
    assert "hrnet_w18" in str(err.value) and "\n" not in str(err.value)


def test_failed_download_names_the_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(UserError, match="pretrained=false") as err:
        TimmEncoder("hrnet_w18_small", pretrained=True)
    assert "weights_file" in str(err.value)


def test_missing_weights_file_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        TimmEncoder("resnet18", pretrained=False, weights_file=str(tmp_path / "nope.pth"))


def tiny_dbnet(adaptive_fusion: bool = True):
    enc = TimmEncoder("resnet18", pretrained=False)
    dec = lambda in_channels: FPNDecoder(in_channels, inner_channels=32, smooth_channels=8, adaptive_fusion=adaptive_fusion)  # noqa: E731
    return build_dbnet(enc, dec, lambda in_channels: DBHead(in_channels, k=50))


@pytest.mark.parametrize("fusion", [True, False])
def test_dbnet_outputs_full_resolution(fusion: bool) -> None:
    model = tiny_dbnet(fusion).train()
    out = model(torch.zeros(2, 3, 96, 128))
    assert set(out) == {"prob_logits", "thresh", "binary_logits"}
    assert all(v.shape == (2, 1, 96, 128) for v in out.values())
    model.eval()
    with torch.no_grad():
        assert set(model(torch.zeros(1, 3, 64, 64))) == {"prob_logits"}  # threshold branch skipped at inference


def targets(b: int = 2, size: int = 32, text: bool = True) -> dict[str, torch.Tensor]:
    gt = torch.zeros(b, 1, size, size)
    if text:
        gt[:, :, 8:16, 4:28] = 1
    return {"prob_map": gt, "prob_mask": torch.ones_like(gt), "thresh_map": torch.full_like(gt, 0.3), "thresh_mask": (gt > 0).float()}


def prediction(b: int = 2, size: int = 32, requires_grad: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(b, 1, size, size, generator=g).requires_grad_(requires_grad)
    thresh = torch.rand(b, 1, size, size, generator=g)
    return {"prob_logits": logits, "thresh": thresh, "binary_logits": 50 * (torch.sigmoid(logits) - thresh)}


def test_loss_weights_and_parts() -> None:
    pred, batch = prediction(), targets()
    parts = DBLoss(prob_map_loss_weight=2, thresh_map_loss_weight=3, binary_map_loss_weight=4)(pred, batch)
    expected = 2 * parts["loss_prob"] + 3 * parts["loss_thresh"] + 4 * parts["loss_binary"]
    assert torch.allclose(parts["loss"], expected)
    parts["loss"].backward()
    assert pred["prob_logits"].grad is not None and torch.isfinite(pred["prob_logits"].grad).all()


def test_loss_of_a_2x2_map_computed_by_hand() -> None:
    """One text pixel (logit 0), three background logits ln 3, 0, -ln 3; negative_ratio 2 keeps the two hardest."""
    ln3, ln2 = math.log(3), math.log(2)
    gt = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    batch = {"prob_map": gt, "prob_mask": torch.ones_like(gt), "thresh_map": torch.full_like(gt, 0.3),
             "thresh_mask": torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])}
    pred = {"prob_logits": torch.tensor([[[[0.0, ln3], [0.0, -ln3]]]]),
            "thresh": torch.tensor([[[[0.5, 0.2], [0.9, 0.0]]]]),
            "binary_logits": torch.tensor([[[[ln3, -ln3], [0.0, -1e4]]]])}  # sigmoid: 0.75, 0.25, 0.5, 0
    parts = DBLoss(negative_ratio=2, prob_map_loss_weight=2, thresh_map_loss_weight=3, binary_map_loss_weight=4)(pred, batch)
    bce = (ln2 + math.log(4) + ln2) / 3  # BCE: -ln sigmoid(0) = ln 2 for the text pixel; ln(1 + e^x) for x = ln 3, 0
    l1 = (abs(0.5 - 0.3) + abs(0.2 - 0.3)) / 2  # mean |thresh - 0.3| over the two masked pixels
    dice = 1 - 2 * 0.75 / ((0.75 + 0.25 + 0.5 + 0.0) + 1.0)  # 1 - 2|B.G| / (|B| + |G|)
    expected = {"loss_prob": bce, "loss_thresh": l1, "loss_binary": dice, "loss": 2 * bce + 3 * l1 + 4 * dice}
    assert {k: float(parts[k]) for k in expected} == pytest.approx(expected, rel=1e-5)


def test_hard_negative_mining_uses_ratio() -> None:
    batch = targets()
    pred = prediction(requires_grad=False)
    low = DBLoss(negative_ratio=0.5)(pred, batch)["loss_prob"]
    high = DBLoss(negative_ratio=20)(pred, batch)["loss_prob"]
    assert not torch.isclose(low, high)


def test_image_without_text_gives_finite_loss_and_gradient() -> None:
    pred, batch = prediction(), targets(text=False)
    parts = DBLoss()(pred, batch)
    assert all(torch.isfinite(v) for v in parts.values())
    parts["loss"].backward()
    assert torch.isfinite(pred["prob_logits"].grad).all() and pred["prob_logits"].grad.abs().sum() > 0


def test_loss_under_bf16_autocast_matches_fp32() -> None:
    pred, batch = prediction(requires_grad=False), targets()
    fp32 = DBLoss()(pred, batch)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = DBLoss()({k: v.bfloat16() for k, v in pred.items()}, batch)["loss"]
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    assert torch.isclose(mixed, fp32, rtol=0.05)


def test_untrained_head_predicts_background() -> None:
    """The prior bias keeps an untrained probability map below the default threshold (no one-blob detection)."""
    torch.manual_seed(0)  # the random init and the input
    model = tiny_dbnet().eval()
    with torch.no_grad():
        prob = torch.sigmoid(model(torch.randn(1, 3, 64, 64))["prob_logits"])
    assert float(prob.mean()) < 0.2
    assert float(prob.mean()) == pytest.approx(0.05, abs=0.04)


@pytest.mark.parametrize("kwargs, message", [
    ({"negative_ratio": -3}, "models.loss.negative_ratio=-3 must be > 0 (hard negatives per positive; DBNet uses 3)"),
    ({"negative_ratio": 0}, "models.loss.negative_ratio=0 must be > 0 (hard negatives per positive; DBNet uses 3)"),
    ({"negative_ratio": "3"}, "models.loss.negative_ratio='3' must be a finite number"),
    ({"prob_map_loss_weight": float("nan")}, "models.loss.prob_map_loss_weight=nan must be a finite number >= 0"),
    ({"thresh_map_loss_weight": "10"}, "models.loss.thresh_map_loss_weight='10' must be a finite number >= 0"),
    ({"binary_map_loss_weight": -1}, "models.loss.binary_map_loss_weight=-1 must be a finite number >= 0"),
    ({"prob_map_loss_weight": 0, "thresh_map_loss_weight": 0, "binary_map_loss_weight": 0},
     "models.loss: the three map loss weights are all 0, so nothing would be learned"),
])
def test_bad_loss_settings_are_refused_by_the_config_rules(kwargs: dict, message: str) -> None:
    defaults = {name: p.default for name, p in inspect.signature(DBLoss).parameters.items()}
    with pytest.raises(UserError, match=re.escape(message)) as err:
        check_combination({f"models.loss.{k}": v for k, v in {**defaults, **kwargs}.items()})
    assert "\n" not in str(err.value)
