/* The float32 pass of the pose store (stages/pairing/pose_store.py, PoseStore._score_step) in one pass over a block.
 *
 * numpy needs about fifteen passes over every block of stored poses per query (two matrix-vector products, the
 * stored keypoints the query lacks, the per-mask table, then the score's algebra element by element); this reads
 * each stored pose once and keeps the rest in registers and a small tile. It computes the same quantities in
 * float32 as the numpy code beside it, which stays as the fallback and the reference: see _score_step's docstring
 * for the algebra. Built as an optional extension: without a C compiler the index runs on numpy alone.
 *
 * score_block(z, stride, rows, mask_ids, table, groups, coef, missing, k, min_spread, out), all addresses of
 * C-contiguous arrays the caller has checked:
 *   z        complex64 (17, stride): keypoint-major block, rows [0, rows) used
 *   mask_ids int32 (rows,): each stored pose's mask number, an index into table (clipped to [0, groups))
 *   table    complex64 (groups, 2, 2): per mask and orientation [a, r + i nu]
 *   coef     complex64 (2, 17): conj(w) of the query per orientation (plain, mirrored)
 *   missing  int64 (2, k): the keypoints the query lacks, per orientation
 *   out      float32 (rows,): the better orientation's squared score, NaN where neither is comparable
 * The GIL is released while it runs, so the index's two search threads run it side by side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define KEYPOINTS 17
#define TILE 256

/* Built for the baseline CPU and, where GCC can dispatch at load time, for AVX2 + FMA machines too. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static void score_tile(const float *z, Py_ssize_t stride, Py_ssize_t first, Py_ssize_t n, const int32_t *mask_ids,
                       const float *table, Py_ssize_t groups, const float *coef, const int64_t *missing,
                       Py_ssize_t k, float min_spread, float *out)
{
    float pr[2][TILE], pi[2][TILE], zr[2][TILE], zi[2][TILE], t2[2][TILE], s2[2][TILE];
    for (int o = 0; o < 2; o++) {
        for (Py_ssize_t j = 0; j < n; j++) {
            pr[o][j] = 0.0f; pi[o][j] = 0.0f; zr[o][j] = 0.0f; zi[o][j] = 0.0f; t2[o][j] = 0.0f;
        }
    }
    /* P = sum_i conj(w_i) z_i for both orientations: one read of each keypoint row of the tile. */
    for (int i = 0; i < KEYPOINTS; i++) {
        const float *row = z + 2 * (i * stride + first);
        const float c0r = coef[2 * i], c0i = coef[2 * i + 1];
        const float c1r = coef[2 * (KEYPOINTS + i)], c1i = coef[2 * (KEYPOINTS + i) + 1];
        for (Py_ssize_t j = 0; j < n; j++) {
            const float xr = row[2 * j], xi = row[2 * j + 1];
            pr[0][j] += c0r * xr - c0i * xi;
            pi[0][j] += c0r * xi + c0i * xr;
            pr[1][j] += c1r * xr - c1i * xi;
            pi[1][j] += c1r * xi + c1i * xr;
        }
    }
    /* zeta = sum_D z and T = sum_D |z|^2 over the stored keypoints the query lacks (the tile is in cache now). */
    for (int o = 0; o < 2; o++) {
        for (Py_ssize_t m = 0; m < k; m++) {
            const float *row = z + 2 * (missing[o * k + m] * stride + first);
            for (Py_ssize_t j = 0; j < n; j++) {
                const float xr = row[2 * j], xi = row[2 * j + 1];
                zr[o][j] += xr;
                zi[o][j] += xi;
                t2[o][j] += xr * xr + xi * xi;
            }
        }
    }
    /* The per-mask terms of each row (rows of a tile have different masks: plain loads here; vector gathers were
     * slower), then the score in branch-free loops the compiler vectorizes. */
    float terms[8][TILE]; /* per orientation o: a (re, im), r, nu at 4 o + 0..3 */
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t g = mask_ids[first + j];
        const float *t = table + 8 * (g < 0 ? 0 : (g >= groups ? groups - 1 : g));
        for (int f = 0; f < 8; f++)
            terms[f][j] = t[f];
    }
    for (int o = 0; o < 2; o++) {
        if (k) {
            for (Py_ssize_t j = 0; j < n; j++) {
                const float ar = terms[4 * o][j], ai = terms[4 * o + 1][j];
                const float num_r = pr[o][j] + ar * zr[o][j] - ai * zi[o][j];
                const float num_i = pi[o][j] + ar * zi[o][j] + ai * zr[o][j];
                const float nu = terms[4 * o + 3][j];
                const float dv = 1.0f - (t2[o][j] + nu * (zr[o][j] * zr[o][j] + zi[o][j] * zi[o][j]));
                const float v = (num_r * num_r + num_i * num_i) * terms[4 * o + 2][j] / dv;
                s2[o][j] = dv <= min_spread ? NAN : v;
            }
        } else {
            for (Py_ssize_t j = 0; j < n; j++)
                s2[o][j] = (pr[o][j] * pr[o][j] + pi[o][j] * pi[o][j]) * terms[4 * o + 2][j];
        }
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        /* fmax: the other value where one is NaN (r is NaN where the coverage rule fails) */
        const float a = s2[0][j], b = s2[1][j];
        out[first + j] = a != a ? b : (b > a ? b : a);
    }
}

static PyObject *score_block(PyObject *self, PyObject *args)
{
    Py_ssize_t z, stride, rows, mask_ids, table, groups, coef, missing, k, out;
    float min_spread;
    if (!PyArg_ParseTuple(args, "nnnnnnnnnfn", &z, &stride, &rows, &mask_ids, &table, &groups, &coef, &missing, &k,
                          &min_spread, &out))
        return NULL;
    if (rows < 0 || rows > stride || groups < 1 || k < 0 || k > KEYPOINTS) {
        PyErr_SetString(PyExc_ValueError, "score_block: inconsistent sizes");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t first = 0; first < rows; first += TILE) {
        const Py_ssize_t n = rows - first < TILE ? rows - first : TILE;
        score_tile((const float *)z, stride, first, n, (const int32_t *)mask_ids, (const float *)table, groups,
                   (const float *)coef, (const int64_t *)missing, k, min_spread, (float *)out);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"score_block", score_block, METH_VARARGS, "The pose store's float32 pass over one block (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pose_kernel", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pose_kernel(void) { return PyModule_Create(&module); }
