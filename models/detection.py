"""torchvision Mask R-CNN and Keypoint R-CNN adapters: device, input size, person filter, score mapping.

Both adapters take plain arguments, BGR uint8 images as OpenCV decodes them, and return numpy results in the
input's pixel coordinates. They run under ``torch.inference_mode``; on CUDA (device "auto" picks it when
present) under fp16 autocast, on the CPU in fp32.

Input size. torchvision's GeneralizedRCNNTransform scales every image so that its short side is 800 px (long
side at most 1333), which upscales 720p and 480p footage for nothing. Here the short side is ``min(image
short side, min_size)`` per batch: images are only ever shrunk, never enlarged. What each input size and
proposal count costs is measured in bench/README.md ("Model input sizes").

Much of Mask R-CNN's CPU cost does not scale with the image: the box head runs on every RPN proposal
(torchvision's default is 1000 per image). ``proposals`` sets that number; the daemon's config passes 300 for
frames (the Faster R-CNN paper's test setting) and 100 for single-person patches, and a caller that needs
torchvision's exact behaviour passes 1000.

The adapters' defaults are the config's (detect.* and classify.*, checked by a test), so a notebook that builds
one without arguments sees what the daemon does. Keypoint R-CNN sees square person patches at their own size:
the person then fills most of the image, well inside the FPN anchor range (32-512 px).

Person filter. ``roi_heads.postprocess_detections`` is wrapped so that only what the caller keeps (person
class with real weights, every class with "none"; box side >= min_box_side; the best ``max_persons`` by
score) reaches the mask and keypoint heads: those heads cost per box, and random-init weights at threshold
0.0 otherwise send 100 boxes through them. The filter sees up to 1000 candidates, not torchvision's 100, so
small or non-person boxes cannot crowd out the ones kept. torchvision drops boxes under ``box_score_thresh``
before that point, so the configured threshold is passed into the model.

Keypoint scores. torchvision returns, per keypoint, the heatmap logit at the chosen location. The heatmaps
are trained with a softmax over the 56x56 positions, so that value is a ranking score, not a probability
(random init gives about -30..120; pretrained values could not be measured offline). It is mapped into [0,
1] by a shifted logistic, ``sigmoid(logit - 2.0)``: monotone (ordering kept), 0.5 sits at logit 2, the
cut-off Detectron's keypoint visualisation uses for "visible", so ``min_confidence=0.5`` in the view rules
means what Detectron users expect; logit 5 → 0.95, logit 0 → 0.12."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from humanstyle.models.weights import build_model, choice_kind

COCO_PERSON_LABEL = 1
KEYPOINT_LOGIT_OFFSET = 2.0  # logit mapped to confidence 0.5 (Detectron's kp_thresh)
MASK_THRESHOLD = 0.5  # torchvision mask probabilities -> bool
# Boxes torchvision hands to the filter below (its default is 100, counted over all classes); only the kept
# ones reach the per-box heads, so a generous number costs a top-k and no head time.
CANDIDATES_PER_IMAGE = 1000


@dataclass(frozen=True)
class PersonDetection:
    """One detected person in frame pixels.

    box: (x1, y1, x2, y2) floats, inside the frame.
    mask: HxW bool in frame pixels (the patch step cuts the same square from frame and mask).
    label: COCO label (1 = person with real weights; with weights "none" whatever class the random head
    chose, kept class-agnostically).
    """

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray
    label: int


@dataclass(frozen=True)
class KeypointResult:
    """The best-scoring person in a patch.

    keypoints: (17, 3) float32, COCO order; x, y in patch pixels, confidence in [0, 1].
    score: the person box score; box: (x1, y1, x2, y2) in patch pixels.
    """

    keypoints: np.ndarray
    score: float
    box: tuple[float, float, float, float]


def set_torch_threads(n: int) -> None:
    """Pin torch's intra-op threads to ``n`` (inter-op too while still allowed) so workers share cores."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel work
        torch.set_num_interop_threads(n)


def resolve_device(device: str) -> torch.device:
    """ "auto" → CUDA when available, else CPU; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def keypoint_confidence(logits: np.ndarray) -> np.ndarray:
    """Map torchvision keypoint logits to [0, 1]: sigmoid(logit - KEYPOINT_LOGIT_OFFSET); NaN → 0."""
    z = np.nan_to_num(np.asarray(logits, dtype=np.float64), nan=-np.inf) - KEYPOINT_LOGIT_OFFSET
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # tanh form cannot overflow


def box_iou(boxes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Intersection over union of each (x1, y1, x2, y2) row of `boxes` with the box `target`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    t = np.asarray(target, dtype=np.float64)
    iw = np.clip(np.minimum(boxes[:, 2], t[2]) - np.maximum(boxes[:, 0], t[0]), 0.0, None)
    ih = np.clip(np.minimum(boxes[:, 3], t[3]) - np.maximum(boxes[:, 1], t[1]), 0.0, None)
    inter = iw * ih
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + (t[2] - t[0]) * (t[3] - t[1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def choose_person(boxes: np.ndarray, scores: np.ndarray, target: Sequence[float], min_overlap: float) -> int | None:
    """Which of the people found in a patch is the one the patch was cut around.

    A patch is a square around one detected person, but neighbours in a crowd reach into it and may score
    higher. The person kept is the one whose box overlaps the detector's box (`target`, same pixels) the most
    (IoU), ties going to the higher score; None when nobody overlaps it by at least `min_overlap`.
    """
    if len(boxes) == 0:
        return None
    iou = box_iou(boxes, np.asarray(target, dtype=np.float64))
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), -iou))
    best = int(order[0])
    return best if iou[best] >= min_overlap else None


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


class _RCNNAdapter:
    """Shared plumbing: build, device, batching by shape, never-upscale resizing, the post-NMS box filter."""

    def __init__(
        self,
        arch: str,
        weights: str,
        device: str,
        min_size: int,
        max_size: int,
        batch_size: int,
        score_threshold: float,
        keep: int,
        min_box_side: float,
        allow_download: bool,
        upscale: bool = False,
        proposals: int = 1000,
    ) -> None:
        _check_positive(min_size=min_size, max_size=max_size, batch_size=batch_size, keep=keep)
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score threshold must be in [0, 1], got {score_threshold}")
        self.device = resolve_device(device)
        self.min_size, self.max_size, self.batch_size = int(min_size), int(max_size), int(batch_size)
        self.min_box_side = float(min_box_side)
        self.keep = int(keep)
        self.person_only = choice_kind(weights) != "none"
        self.upscale = bool(upscale)
        self.min_overlap = 0.0
        self._scale = 1.0
        # Per-batch target boxes (input pixels) and how many candidates each image had; None = keep by score.
        self._targets: list[Sequence[float]] | None = None
        self._candidates: list[int] = []
        model = build_model(
            arch,
            weights,
            allow_download=allow_download,
            box_score_thresh=score_threshold,
            box_detections_per_img=CANDIDATES_PER_IMAGE,
            # Region proposals the box head sees per image: most of the head's cost scales with it.
            rpn_post_nms_top_n_test=int(proposals),
            min_size=self.min_size,
            max_size=self.max_size,
        )
        self.model: nn.Module = model.to(self.device).eval()
        self._postprocess = model.roi_heads.postprocess_detections
        model.roi_heads.postprocess_detections = self._filtered_postprocess

    def _filtered_postprocess(self, class_logits, box_regression, proposals, image_shapes):
        boxes, scores, labels = self._postprocess(class_logits, box_regression, proposals, image_shapes)
        # Boxes are in resized pixels here; the exact check in frame pixels comes later.
        side = self.min_box_side * self._scale * 0.999
        for i, (b, s, lab) in enumerate(zip(boxes, scores, labels, strict=True)):
            ok = torch.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= side
            if self.person_only:
                ok &= lab == COCO_PERSON_LABEL
            idx = torch.nonzero(ok).flatten()
            idx = idx[torch.argsort(s[idx], descending=True)]
            idx = idx[: self.keep] if self._targets is None else self._own_person(i, b, s, idx)
            boxes[i], scores[i], labels[i] = b[idx], s[idx], lab[idx]
        return boxes, scores, labels

    def _own_person(self, image: int, boxes: torch.Tensor, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Keep only the candidate chosen by `choose_person` for this image's target box (in input pixels)."""
        self._candidates[image] = len(idx)
        target = np.asarray(self._targets[image], dtype=np.float64) * self._scale
        # The candidates are on the model's device; numpy needs them on the CPU (a few boxes: a small copy).
        cand_boxes, cand_scores = boxes[idx].double().cpu().numpy(), scores[idx].double().cpu().numpy()
        j = choose_person(cand_boxes, cand_scores, target, self.min_overlap)
        return idx[j : j + 1] if j is not None else idx[:0]

    def _batches(self, images: Sequence[np.ndarray]) -> Iterator[list[int]]:
        batch: list[int] = []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
                raise ValueError(f"image {i}: expected HxWx3 uint8 BGR, got {img.shape} {img.dtype}")
            if batch and (len(batch) == self.batch_size or images[batch[0]].shape != img.shape):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _run(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """Forward one same-shape batch; returns torchvision's outputs on the CPU, in input pixels."""
        h, w = images[0].shape[:2]
        short = self.min_size if self.upscale else min(self.min_size, h, w)
        self._scale = min(short / min(h, w), self.max_size / max(h, w))
        self.model.transform.min_size = (short,)
        tensors = [
            torch.from_numpy(np.ascontiguousarray(img[..., ::-1]))
            .to(self.device)
            .permute(2, 0, 1)
            .float()
            .div_(255)
            for img in images
        ]
        cuda = self.device.type == "cuda"
        autocast = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            outputs = self.model(tensors)
        return [
            {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in o.items()} for o in outputs
        ]


class PersonDetector(_RCNNAdapter):
    """Mask R-CNN (ResNet-50 FPN) people finder. See the module docstring for sizes and the person filter."""

    ARCH = "maskrcnn_resnet50_fpn"

    def __init__(
        self,
        weights: str,
        device: str = "auto",
        score_threshold: float = 0.7,
        max_persons: int = 4,
        min_box_side: int = 48,
        min_size: int = 512,
        max_size: int = 912,
        batch_size: int = 5,
        allow_download: bool = False,
        proposals: int = 300,
    ) -> None:
        """``proposals``: region proposals per image for the box head (torchvision uses 1000)."""
        super().__init__(
            self.ARCH,
            weights,
            device,
            min_size,
            max_size,
            batch_size,
            score_threshold,
            keep=max_persons,
            min_box_side=min_box_side,
            allow_download=allow_download,
            proposals=proposals,
        )

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[PersonDetection]]:
        """Detect people in HxWx3 uint8 BGR frames; per frame, at most max_persons, best score first."""
        results: list[list[PersonDetection]] = [[] for _ in frames]
        for batch in self._batches(frames):
            for i, out in zip(batch, self._run([frames[i] for i in batch]), strict=True):
                results[i] = self._to_detections(out)
        return results

    def _to_detections(self, out: dict[str, torch.Tensor]) -> list[PersonDetection]:
        dets = []
        masks = out["masks"][:, 0] >= MASK_THRESHOLD
        for j in torch.argsort(out["scores"], descending=True).tolist():
            x1, y1, x2, y2 = (float(v) for v in out["boxes"][j])
            if min(x2 - x1, y2 - y1) < self.min_box_side:
                continue
            dets.append(
                PersonDetection(
                    (x1, y1, x2, y2), float(out["scores"][j]), masks[j].numpy(), int(out["labels"][j])
                )
            )
        return dets[: self.keep]


class KeypointEstimator(_RCNNAdapter):
    """Keypoint R-CNN (ResNet-50 FPN) on person patches: the keypoints of one person per patch.

    Without targets that person is the best-scoring one. With a target box per patch (the detector's box the
    patch was cut around, in patch pixels) it is the person `choose_person` picks, chosen before the keypoint
    head runs, so only that person pays for keypoints."""

    ARCH = "keypointrcnn_resnet50_fpn"

    def __init__(
        self,
        weights: str,
        device: str = "auto",
        min_size: int = 256,
        max_size: int = 256,
        batch_size: int = 1,
        box_score_threshold: float = 0.3,
        allow_download: bool = False,
        upscale: bool = False,
        proposals: int = 100,
        min_overlap: float = 0.5,
    ) -> None:
        """``upscale=True`` resizes every patch to ``min_size`` even when that enlarges it, as torchvision's
        default transform does (for comparisons with it; it only costs time). ``proposals``: region proposals per
        patch for the box head. ``min_overlap``: the IoU with the target box a person needs to be kept."""
        super().__init__(
            self.ARCH,
            weights,
            device,
            min_size,
            max_size,
            batch_size,
            box_score_threshold,
            keep=1,
            min_box_side=0.0,
            allow_download=allow_download,
            upscale=upscale,
            proposals=proposals,
        )
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap}")
        self.min_overlap = float(min_overlap)

    def estimate(self, patches: Sequence[np.ndarray]) -> list[KeypointResult | None]:
        """Keypoints of the best-scoring person per HxWx3 uint8 BGR patch, or None where nobody is found."""
        return [result for result, _ in self.estimate_own(patches, None)]

    def estimate_own(
        self, patches: Sequence[np.ndarray], targets: Sequence[Sequence[float]] | None
    ) -> list[tuple[KeypointResult | None, str | None]]:
        """Per patch (result, None), or (None, reason): "no_person" when the model finds nobody,
        "no_matching_person" when it finds people but none overlapping the patch's target box enough."""
        if targets is not None and len(targets) != len(patches):
            raise ValueError(f"{len(targets)} target boxes for {len(patches)} patches")
        out: list[tuple[KeypointResult | None, str | None]] = [(None, "no_person") for _ in patches]
        for batch in self._batches(patches):
            self._targets = None if targets is None else [targets[i] for i in batch]
            self._candidates = [0] * len(batch)
            try:
                outputs = self._run([patches[i] for i in batch])
            finally:
                self._targets = None
            for k, (i, o) in enumerate(zip(batch, outputs, strict=True)):
                if len(o["scores"]) == 0:
                    if targets is not None and self._candidates[k]:
                        out[i] = (None, "no_matching_person")
                    continue
                j = int(torch.argmax(o["scores"]))
                h, w = patches[i].shape[:2]
                kp = o["keypoints"][j].numpy().astype(np.float32)
                kp[:, 0] = np.clip(kp[:, 0], 0.0, w)
                kp[:, 1] = np.clip(kp[:, 1], 0.0, h)
                kp[:, 2] = keypoint_confidence(o["keypoints_scores"][j].numpy())
                box = tuple(float(v) for v in o["boxes"][j])
                out[i] = (KeypointResult(kp, float(o["scores"][j]), box), None)  # type: ignore[arg-type]
        return out
