"""Code that runs on an accelerator must not hand device tensors to numpy: checked on the CPU with a stand-in.

CI has no GPU, and a CUDA tensor refuses `.numpy()` until it has been copied to the CPU. `AcceleratorTensor` behaves
the same way on a CPU machine, so the paths that read model outputs into numpy can be driven with it here (the full
CUDA runs are bench/gpu.sh's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humanstyle.models.detection import KeypointEstimator


class AcceleratorTensor(torch.Tensor):
    """A CPU tensor that refuses `.numpy()` as a CUDA tensor does; `.cpu()` gives back a plain tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.cpu and isinstance(out, torch.Tensor):
            return out.as_subclass(torch.Tensor)
        return out

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert an accelerator tensor to numpy; use Tensor.cpu() first")


def on_accelerator(values) -> torch.Tensor:
    return torch.tensor(values).as_subclass(AcceleratorTensor)


def test_the_stand_in_behaves_like_a_device_tensor():
    t = on_accelerator([1.0, 2.0])
    with pytest.raises(TypeError):
        t.double().numpy()
    assert (t[torch.tensor([1])].double().cpu().numpy() == np.array([2.0])).all()


def test_own_person_choice_reads_device_candidates_through_the_cpu():
    # The keypoint model's post-processing hands the candidate boxes on the model's device to the own-person choice.
    est = KeypointEstimator.__new__(KeypointEstimator)  # the choice needs only these fields, not a built model
    est._targets, est._candidates, est._scale, est.min_overlap = [(60.0, 40.0, 180.0, 250.0)], [0], 1.0, 0.5
    boxes = on_accelerator([[150.0, 10.0, 256.0, 256.0], [60.0, 40.0, 180.0, 250.0]])  # neighbour, own person
    scores = on_accelerator([0.99, 0.6])
    kept = est._own_person(0, boxes, scores, torch.tensor([0, 1]))
    assert kept.tolist() == [1]
    assert est._candidates == [2]
