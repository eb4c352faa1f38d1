"""The translator contract pix2pix and CycleGAN share (models/translator.py): both keep it, both are built from a
checkpoint's kind and settings, and a round trip through a checkpoint's state gives the same outputs."""

from __future__ import annotations

import pytest
import torch

from humanstyle.models.translator import TRANSLATORS, Translator, build_translator

SMALL = {"pix2pix": {"image_size": 32, "ngf": 4, "ndf": 4, "device": "cpu"},
         "cyclegan": {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "device": "cpu"}}


@pytest.mark.parametrize("kind", sorted(TRANSLATORS))
def test_each_model_keeps_the_contract_and_rebuilds_from_its_checkpoint_state(kind):
    net = build_translator(kind, SMALL[kind])
    assert isinstance(net, Translator)
    assert net.paired == (kind == "pix2pix") and "a2b" in net.directions
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    net.train_step(a, b)
    scores = net.validate(a, b)
    assert "score" in scores and all(isinstance(v, float) for v in scores.values())
    state = net.state_dict()
    assert state["kind"] == kind
    again = build_translator(state["kind"], state["settings"])
    again.load_state_dict(state)
    for direction in net.directions:
        assert torch.equal(net.translate(a, direction), again.translate(a, direction))


def test_an_unknown_kind_or_setting_is_refused():
    with pytest.raises(ValueError, match="unknown translator 'unit'"):
        build_translator("unit", {})
    with pytest.raises(TypeError):
        build_translator("pix2pix", {"n_blocks": 3})  # a CycleGAN setting
