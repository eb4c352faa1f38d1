"""Candidate search for the pose store on FAISS: a fixed-size embedding of prepared poses and an IVF index over it.

The exact score (`stages.pairing.pose`) compares two poses on the keypoints both show, after the best rotation and with
the mirror image tried; no fixed-size vector reproduces that for every pair of visibility masks. The embedding
gets close enough to propose candidates, which the index then scores exactly (`stages.pairing.pose_store`):

1. Missing keypoints are filled from a template pose fitted to the visible ones (similarity fit: scale, rotation,
   shift), so every pose has all 17 points.
2. The filled pose is re-centred, scaled to unit norm and rotated into the template's orientation (the fit's own
   rotation), so the best-rotation cosine of two poses becomes a plain dot product of their vectors, and a
   nearest neighbour in L2 is a best match. With the same mask on both sides this is exact up to the alignment;
   filled keypoints are where it errs (bench/README.md, "Pairing at scale").
3. The mirror image is a second query (the stored side is never mirrored, as in the exact score).

The template is the Procrustes mean of the stored poses that show the most keypoints (one per index, fitted when
the FAISS index is trained), so it follows the view: a back view's template has its shoulders the other way round.

The FAISS index is IVF: lists of nearby poses, `nprobe` of them visited per query, holding each pose as 34 floats
(136 bytes) up to FLAT_MAX_ROWS poses and as 8-bit codes (34 bytes) beyond, where memory matters more than the
2x faster search of plain floats (bench/README.md, "Pairing at scale"). It is retrained from every stored pose
when the index has grown `RETRAIN_GROWTH` times since the last training (the lists follow the data), and lives in
memory only: the pose store rebuilds it at open from the poses it reads anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanstyle.stages.pairing.pose import NUM_KEYPOINTS, mask_bits, mirror_prepared
from humanstyle.stages.vocabulary import SEARCH_METHODS

try:
    import faiss
except ImportError:  # the exact scan still works; asking for candidates says what to install
    faiss = None

DIM = 2 * NUM_KEYPOINTS
RETRAIN_GROWTH = 4
TRAIN_POINTS_PER_LIST = 40  # k-means sample per list (FAISS warns below 39)
TEMPLATE_SAMPLE = 20_000
EMBED_CHUNK = 262_144  # rows embedded per step: bounds the float64 temporaries (~100 MB)
FLAT_MAX_ROWS = 2_000_000  # plain float vectors up to here (272 MB), 8-bit codes beyond




@dataclass(frozen=True)
class SearchSettings:
    """How a pose store finds its best matches (the pairing settings carry them; see stages.settings)."""

    method: str = "auto"  # auto: FAISS candidates from min_rows stored poses on (when installed), else exact
    min_rows: int = 200_000
    nprobe: int = 32
    candidates: int = 256  # per orientation of a query

    @classmethod
    def of(cls, pair) -> SearchSettings:
        """From the [pair] settings (stages.settings.PairSettings)."""
        return cls(pair.search, pair.search_min_rows, pair.search_nprobe, pair.search_candidates)

    def __post_init__(self) -> None:
        if self.method not in SEARCH_METHODS:
            raise ValueError(f"pose search {self.method!r}: expected one of {SEARCH_METHODS}")


def available() -> bool:
    return faiss is not None


def lists_for(rows: int) -> int:
    """IVF lists for an index of `rows` poses: about 4 sqrt(N) (FAISS's guidance is 4-16 sqrt(N))."""
    return int(np.clip(4 * np.sqrt(max(rows, 1)), 16, 65536))


def fit_template(masks: np.ndarray, z: np.ndarray, iterations: int = 5) -> np.ndarray:
    """A unit-norm, centred complex (17,) pose: the Procrustes mean of the poses showing the most keypoints.

    Keypoints that none of those poses shows (rare: a view that never shows its ankles) come from the mean of the
    poses that do show them, aligned on the rest."""
    bits = mask_bits(masks)
    counts = bits.sum(axis=1)
    usable = np.flatnonzero(masks != 0)
    if not len(usable):
        raise ValueError("no usable pose to fit a template to")
    best = usable[np.argsort(-counts[usable], kind="stable")[:TEMPLATE_SAMPLE]]
    zs, shown = z[best].astype(np.complex128), bits[best]
    template = zs[0].copy()
    for _ in range(iterations):
        rotation = np.conj(zs) @ template  # per pose: the rotation that best aligns it with the template
        rotation /= np.where(np.abs(rotation) > 0, np.abs(rotation), 1.0)
        aligned = zs * rotation[:, None]
        seen = shown.sum(axis=0)
        mean = aligned.sum(axis=0) / np.maximum(seen, 1)
        template = np.where(seen > 0, mean, template)
        template -= template.mean()
        template /= np.linalg.norm(template)
    return template


def embed(masks: np.ndarray, z: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(n,) masks and (n, 17) prepared poses -> float32 (n, 34) unit vectors (re, im interleaved); rows of
    unusable poses (mask 0) are NaN."""
    out = np.empty((len(masks), DIM), dtype=np.float32)
    for start in range(0, len(masks), EMBED_CHUNK):
        stop = start + EMBED_CHUNK
        out[start:stop] = _embed(masks[start:stop], z[start:stop], template)
    return out


def _embed(masks: np.ndarray, z: np.ndarray, template: np.ndarray) -> np.ndarray:
    bits = mask_bits(masks)
    count = np.maximum(bits.sum(axis=1), 1)
    zc = z.astype(np.complex128)  # own-centred on the visible keypoints, 0 elsewhere
    t = np.where(bits, template[None, :], 0.0)
    t_centre = t.sum(axis=1) / count
    t = np.where(bits, t - t_centre[:, None], 0.0)
    # z ~ scale * t + shift on the visible keypoints; the shift is 0 as both are centred there.
    scale = (np.conj(t) * zc).sum(axis=1) / np.maximum((np.abs(t) ** 2).sum(axis=1), 1e-12)
    filled = np.where(bits, zc, scale[:, None] * (template[None, :] - t_centre[:, None]))
    filled -= filled.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        filled *= (np.conj(scale) / np.abs(scale))[:, None]  # into the template's orientation
        filled /= np.linalg.norm(filled, axis=1, keepdims=True)
    filled[masks == 0] = complex(np.nan, np.nan)
    out = np.empty((len(z), DIM), dtype=np.float32)
    out[:, 0::2], out[:, 1::2] = filled.real, filled.imag
    return out


class CandidateIndex:
    """FAISS IVF over the embeddings of one pose store's rows (FAISS ids are the pose store's row numbers)."""

    def __init__(self, nprobe: int = 32, candidates: int = 256) -> None:
        if faiss is None:
            raise RuntimeError("pairing.search = 'faiss' needs the faiss-cpu package (pip install faiss-cpu)")
        self.nprobe, self.candidates = nprobe, candidates
        self.template: np.ndarray | None = None
        self.index = None
        self.trained_rows = 0
        self.rows = 0  # pose store rows covered (added or skipped as unusable)

    def __len__(self) -> int:
        return self.rows

    @property
    def memory_bytes(self) -> int:
        """What the FAISS index holds: codes and ids per pose, and the coarse centroids."""
        if self.index is None:
            return 0
        return int(self.index.ntotal) * (self.index.code_size + 8) + self.index.nlist * DIM * 4

    def needs_training(self, rows: int) -> bool:
        return self.index is None or rows >= RETRAIN_GROWTH * self.trained_rows

    def fit(self, masks: np.ndarray, z: np.ndarray, rows: int, seed: int = 0) -> None:
        """Fit the template and the lists of an index of `rows` poses to a sample of them; the rows are then added
        with `add`, all of them, in row order."""
        self.template = fit_template(masks, z)
        usable = np.flatnonzero(masks != 0)
        vectors = embed(masks[usable], z[usable], self.template)
        nlist = max(1, min(lists_for(rows), len(usable) // TRAIN_POINTS_PER_LIST))
        quantizer = faiss.IndexFlatL2(DIM)
        if rows <= FLAT_MAX_ROWS:
            index = faiss.IndexIVFFlat(quantizer, DIM, nlist)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, DIM, nlist, faiss.ScalarQuantizer.QT_8bit)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = min(self.nprobe, nlist)
        self.index, self.quantizer = index, quantizer
        self.trained_rows, self.rows = rows, 0

    def add(self, masks: np.ndarray, z: np.ndarray) -> None:
        """Append the next rows of the pose store (in order)."""
        first = self.rows
        for start in range(0, len(masks), EMBED_CHUNK):
            part = slice(start, start + EMBED_CHUNK)
            vectors = embed(masks[part], z[part], self.template)
            ok = np.flatnonzero(masks[part] != 0)
            if len(ok):
                self.index.add_with_ids(np.ascontiguousarray(vectors[ok]), (first + start + ok).astype(np.int64))
        self.rows += len(masks)

    def search(self, masks: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
        """Candidate rows per query (plain and mirrored queries), each sorted and unique."""
        mirrored_masks, mirrored_z = mirror_prepared(masks, z)
        vectors = embed(np.concatenate([masks, mirrored_masks]), np.concatenate([z, mirrored_z]), self.template)
        _, found = self.index.search(np.nan_to_num(vectors, nan=0.0), self.candidates)
        n = len(masks)
        both = np.concatenate([found[:n], found[n:]], axis=1)
        return [np.unique(row[row >= 0]) for row in both]
