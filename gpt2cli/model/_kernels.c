/* Kernels for CPU decoding steps, where torch's per-op costs and one-row kernels dominate.
 *
 * matvec: a few rows of fp32 activations times a row-major weight held as fp32, fp16 or int8
 * (one fp32 scale per output row), fp32 out. Decoding one token reads every weight once, so its
 * speed is how fast the weights stream from memory. Each thread takes a contiguous block of
 * output rows and reads each weight row front to back, once for all activation rows (the row
 * stays in L1 for the others), widening fp16 / int8 in registers (F16C, AVX2).
 *
 * attend: one new position per row: store its key and value in the KV cache and attend over
 * every cached position (softmax in fp32), one (row, head) per task.
 *
 * layer_norm: rows of fp32, two passes (mean, then variance about it), as torch computes it.
 *
 * block: a Transformer block of a decoding step (LayerNorms, the four products, attend, GELU)
 * in one call.
 *
 * Built by setup.py as an optional extension (gpt2cli.model._kernels); its Python side,
 * gpt2cli.model.compiled_kernels, uses it when it imports and supported() says the CPU has
 * AVX2, FMA and F16C, and torch's kernels otherwise. Threads: OpenMP, the runtime torch's CPU
 * build also uses. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { F32 = 0, F16 = 1, I8 = 2 };

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_KERNELS 1
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))

TARGET static inline float sum8(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* 8 weights of a row as fp32. */
TARGET static inline __m256 load8_f32(const void *row, int64_t i) {
    return _mm256_loadu_ps((const float *)row + i);
}
TARGET static inline __m256 load8_f16(const void *row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
}
TARGET static inline __m256 load8_i8(const void *row, int64_t i) {
    __m128i bytes = _mm_loadl_epi64((const __m128i *)((const int8_t *)row + i));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}
TARGET static inline float load1(int kind, const void *row, int64_t i) {
    if (kind == F32) return ((const float *)row)[i];
    if (kind == F16) return _cvtsh_ss(((const uint16_t *)row)[i]);
    return (float)((const int8_t *)row)[i];
}

#define DOT(NAME, LOAD)                                                                        \
    TARGET static float NAME(const void *row, const float *x, int64_t n) {                   \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        int64_t i = 0;                                                                        \
        for (; i + 32 <= n; i += 32) {                                                        \
            a0 = _mm256_fmadd_ps(LOAD(row, i), _mm256_loadu_ps(x + i), a0);                   \
            a1 = _mm256_fmadd_ps(LOAD(row, i + 8), _mm256_loadu_ps(x + i + 8), a1);           \
            a2 = _mm256_fmadd_ps(LOAD(row, i + 16), _mm256_loadu_ps(x + i + 16), a2);         \
            a3 = _mm256_fmadd_ps(LOAD(row, i + 24), _mm256_loadu_ps(x + i + 24), a3);         \
        }                                                                                     \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(row, i), _mm256_loadu_ps(x + i), a0); \
        return sum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));            \
    }
DOT(dot_f32, load8_f32)
DOT(dot_f16, load8_f16)
DOT(dot_i8, load8_i8)

typedef float (*dot_fn)(const void *, const float *, int64_t);

/* y[r, o] = (accumulate ? y[r, o] : 0) + scale[o] * (w[o, :] . x[r, :]) + bias[o] */
TARGET static void matvec(int kind, const void *w, const float *scale, const float *x,
                          const float *bias, float *y, int64_t rows, int64_t out, int64_t n,
                          int accumulate, int threads) {
    dot_fn dot = kind == F32 ? dot_f32 : kind == F16 ? dot_f16 : dot_i8;
    int64_t row_bytes = n * (kind == F32 ? 4 : kind == F16 ? 2 : 1);
    int64_t tail = n - n % 8;
    int parallel = threads > 1 && out * row_bytes >= (1 << 18);
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t o = 0; o < out; o++) {
        const char *row = (const char *)w + o * row_bytes;
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            float s = dot(row, xr, n);
            for (int64_t i = tail; i < n; i++) s += load1(kind, row, i) * xr[i];
            if (scale) s *= scale[o];
            if (bias) s += bias[o];
            float *target = y + r * out + o;
            *target = accumulate ? *target + s : s;
        }
    }
}

/* exp(x) for 8 floats: 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, Cephes' expf polynomial
 * (relative error ~2e-7); x clamped to the floats whose exp is a normal float (NaN stays NaN:
 * max/min return their second operand when one is NaN), 0 below that range. */
TARGET static inline __m256 exp8(__m256 x) {
    __m256 below = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(88.3f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* y[b, h*hs:(h+1)*hs] = softmax(q k^T / sqrt(hs)) v over positions 0..t, after storing the new
 * key and value at position t. qkv: (B, 3C) rows [q | k | v]; caches: (B, heads, max_len, hs).
 * Returns 0, or -1 when scratch memory could not be had. */
TARGET static int attend(const float *qkv, float *kc, float *vc, float *y, int64_t batch,
                         int64_t heads, int64_t hs, int64_t max_len, int64_t t, int threads) {
    int64_t C = heads * hs, positions = t + 1;
    float scale = 1.0f / sqrtf((float)hs);
    int64_t tail = hs - hs % 8;
    int failed = 0;
    int parallel = threads > 1 && batch * heads * positions * hs >= (1 << 14);
#pragma omp parallel num_threads(threads) if (parallel) reduction(| : failed)
    {
        float *p = malloc((size_t)positions * sizeof(float));
        if (p == NULL) failed = 1;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * heads; bh++) {
            if (p == NULL) continue;
            int64_t b = bh / heads, h = bh % heads;
            const float *row = qkv + b * 3 * C;
            const float *q = row + h * hs;
            float *keys = kc + bh * max_len * hs, *values = vc + bh * max_len * hs;
            memcpy(keys + t * hs, row + C + h * hs, (size_t)hs * sizeof(float));
            memcpy(values + t * hs, row + 2 * C + h * hs, (size_t)hs * sizeof(float));
            float top = -INFINITY;
            for (int64_t s = 0; s < positions; s++) {
                const float *k = keys + s * hs;
                float d = dot_f32(k, q, hs);
                for (int64_t i = tail; i < hs; i++) d += k[i] * q[i];
                p[s] = d * scale;
                if (p[s] > top) top = p[s];
            }
            __m256 sums = _mm256_setzero_ps(), shift = _mm256_set1_ps(top);
            int64_t s = 0;
            for (; s + 8 <= positions; s += 8) {
                __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + s), shift));
                _mm256_storeu_ps(p + s, e);
                sums = _mm256_add_ps(sums, e);
            }
            float total = sum8(sums);
            for (; s < positions; s++) {
                p[s] = expf(p[s] - top);
                total += p[s];
            }
            float *out = y + b * C + h * hs;
            __m256 norm = _mm256_set1_ps(1.0f / total);
            int64_t i = 0;
            for (; i + 32 <= hs; i += 32) { /* 32 columns of the output in registers */
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int64_t s = 0; s < positions; s++) {
                    const float *v = values + s * hs + i;
                    __m256 w = _mm256_set1_ps(p[s]);
                    a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a0);
                    a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a1);
                    a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a2);
                    a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a3);
                }
                _mm256_storeu_ps(out + i, _mm256_mul_ps(a0, norm));
                _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(a1, norm));
                _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(a2, norm));
                _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(a3, norm));
            }
            for (; i < hs; i++) {
                float a = 0.0f;
                for (int64_t s = 0; s < positions; s++) a += p[s] * values[s * hs + i];
                out[i] = a / total;
            }
        }
        free(p);
    }
    return failed ? -1 : 0;
}

/* y[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias, over rows of n. */
TARGET static void layer_norm(const float *x, const float *weight, const float *bias, float *y,
                              int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += xr[i];
        float mean = (float)(sum / (double)n);
        double squares = 0.0;
        for (int64_t i = 0; i < n; i++) squares += (double)(xr[i] - mean) * (xr[i] - mean);
        float inv = 1.0f / sqrtf((float)(squares / (double)n) + eps);
        for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - mean) * inv * weight[i] + bias[i];
    }
}

/* GELU, tanh approximation, in place: x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
 * as x * sigmoid(2u) = x e / (1 + e), e = exp(2u): no cancellation for negative x. */
TARGET static void gelu(float *x, int64_t n) {
    const float c = 0.7978845608f;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_mul_ps(_mm256_set1_ps(c),
                                 _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v),
                                                 _mm256_mul_ps(v, v), v));
        __m256 e = exp8(_mm256_add_ps(u, u));
        __m256 sigmoid = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(v, sigmoid));
    }
    for (; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + tanhf(c * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

typedef struct {
    int kind;
    const void *w;
    const float *scale, *bias;
    int64_t out, n;
} linear_t;

/* One Transformer block of a decoding step on rows x (B, C), in place: x += attn(ln_1(x)), then
 * x += mlp(ln_2(x)), the new keys and values stored at position t. Returns 0, or -1 when scratch
 * memory could not be had. */
TARGET static int block(float *x, int64_t batch, int64_t C, const float *const *norms, float eps,
                        const linear_t *layers, float *kc, float *vc, int64_t heads,
                        int64_t max_len, int64_t t, int threads) {
    const linear_t *qkv_in = &layers[0], *attn_out = &layers[1], *fc = &layers[2],
                   *proj = &layers[3];
    float *h = malloc((size_t)(batch * C) * sizeof(float));
    float *qkv = malloc((size_t)(batch * qkv_in->out) * sizeof(float));
    float *y = malloc((size_t)(batch * C) * sizeof(float));
    float *f = malloc((size_t)(batch * fc->out) * sizeof(float));
    int status = -1;
    if (h && qkv && y && f) {
        layer_norm(x, norms[0], norms[1], h, batch, C, eps);
        matvec(qkv_in->kind, qkv_in->w, qkv_in->scale, h, qkv_in->bias, qkv, batch, qkv_in->out,
               C, 0, threads);
        status = attend(qkv, kc, vc, y, batch, heads, C / heads, max_len, t, threads);
        if (status == 0) {
            matvec(attn_out->kind, attn_out->w, attn_out->scale, y, attn_out->bias, x, batch, C,
                   C, 1, threads);
            layer_norm(x, norms[2], norms[3], h, batch, C, eps);
            matvec(fc->kind, fc->w, fc->scale, h, fc->bias, f, batch, fc->out, C, 0, threads);
            gelu(f, batch * fc->out);
            matvec(proj->kind, proj->w, proj->scale, f, proj->bias, x, batch, C, fc->out, 1,
                   threads);
        }
    }
    free(h);
    free(qkv);
    free(y);
    free(f);
    return status;
}

static int cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#else
#define HAVE_KERNELS 0
static int cpu_supported(void) { return 0; }
#endif

static PyObject *py_supported(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused)) {
    return PyBool_FromLong(cpu_supported());
}

/* The arguments as integers (addresses, sizes, flags); 0 on success, -1 with an exception set. */
static int integers(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t count, long long *v,
                    const char *name) {
    if (nargs != count) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", name, count);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) return -1;
    }
    if (!cpu_supported()) {
        PyErr_Format(PyExc_RuntimeError, "%s: this CPU lacks AVX2, FMA or F16C", name);
        return -1;
    }
    return 0;
}

static PyObject *bad(const char *name) {
    PyErr_Format(PyExc_ValueError, "%s: bad kind, size or address", name);
    return NULL;
}

#define ADDRESS(T, value) ((T)(intptr_t)(value))

/* matvec(kind, w, scale, x, bias, y, rows, out, n, accumulate, threads): the pointers are
 * addresses (0 for no scale / no bias); the caller keeps the tensors alive and checks shapes. */
static PyObject *py_matvec(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    long long v[11];
    if (integers(args, nargs, 11, v, "matvec")) return NULL;
    if (v[0] < F32 || v[0] > I8 || v[6] < 0 || v[7] < 0 || v[8] < 0 || !v[1] || !v[3] || !v[5])
        return bad("matvec");
#if HAVE_KERNELS
    Py_BEGIN_ALLOW_THREADS
    matvec((int)v[0], ADDRESS(const void *, v[1]), ADDRESS(const float *, v[2]),
           ADDRESS(const float *, v[3]), ADDRESS(const float *, v[4]), ADDRESS(float *, v[5]),
           v[6], v[7], v[8], (int)v[9], v[10] < 1 ? 1 : (int)v[10]);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

/* attend(qkv, k_cache, v_cache, y, batch, heads, head_size, max_len, t, threads) */
static PyObject *py_attend(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    long long v[10];
    if (integers(args, nargs, 10, v, "attend")) return NULL;
    if (!v[0] || !v[1] || !v[2] || !v[3] || v[4] < 0 || v[5] < 0 || v[6] < 0 || v[8] < 0 ||
        v[8] >= v[7])
        return bad("attend");
    int status = 0;
#if HAVE_KERNELS
    Py_BEGIN_ALLOW_THREADS
    status = attend(ADDRESS(const float *, v[0]), ADDRESS(float *, v[1]), ADDRESS(float *, v[2]),
                    ADDRESS(float *, v[3]), v[4], v[5], v[6], v[7], v[8],
                    v[9] < 1 ? 1 : (int)v[9]);
    Py_END_ALLOW_THREADS
#endif
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* layer_norm(x, weight, bias, y, rows, n, eps) */
static PyObject *py_layer_norm(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    long long v[6];
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "layer_norm takes 7 arguments");
        return NULL;
    }
    if (integers(args, 6, 6, v, "layer_norm")) return NULL;
    double eps = PyFloat_AsDouble(args[6]);
    if (eps == -1.0 && PyErr_Occurred()) return NULL;
    if (!v[0] || !v[1] || !v[2] || !v[3] || v[4] < 0 || v[5] < 1) return bad("layer_norm");
#if HAVE_KERNELS
    layer_norm(ADDRESS(const float *, v[0]), ADDRESS(const float *, v[1]),
               ADDRESS(const float *, v[2]), ADDRESS(float *, v[3]), v[4], v[5], (float)eps);
#endif
    Py_RETURN_NONE;
}

/* block(x, batch, C, ln_1 weight, ln_1 bias, ln_2 weight, ln_2 bias, eps,
 *       4 x (kind, w, scale, bias, out) for c_attn, attn c_proj, c_fc, mlp c_proj,
 *       k_cache, v_cache, heads, max_len, t, threads): the shapes are the caller's to check. */
static PyObject *py_block(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    enum { COUNT = 7 + 20 + 6 };
    long long v[COUNT];
    if (nargs != COUNT + 1) {
        PyErr_Format(PyExc_TypeError, "block takes %d arguments", COUNT + 1);
        return NULL;
    }
    double eps = PyFloat_AsDouble(args[7]);
    if (eps == -1.0 && PyErr_Occurred()) return NULL;
    PyObject *rest[COUNT];
    for (int i = 0, j = 0; i < COUNT + 1; i++)
        if (i != 7) rest[j++] = args[i];
    if (integers(rest, COUNT, COUNT, v, "block")) return NULL;
    /* v: x, batch, C, 4 norms, 4 layers x 5, k_cache, v_cache, heads, max_len, t, threads */
    long long batch = v[1], C = v[2], heads = v[29], max_len = v[30], t = v[31];
    if (!v[0] || batch < 0 || C < 1 || heads < 1 || C % heads || t < 0 || t >= max_len)
        return bad("block");
    for (int i = 3; i < 7; i++)
        if (!v[i]) return bad("block");
    long long widths[4] = {3 * C, C, v[7 + 5 * 2 + 4], C}; /* c_fc's width is the MLP's */
    for (int i = 0; i < 4; i++) {
        long long *l = v + 7 + 5 * i;
        if (l[0] < F32 || l[0] > I8 || !l[1] || l[4] != widths[i] || l[4] < 1) return bad("block");
    }
    if (!v[27] || !v[28]) return bad("block");
    int status = 0;
#if HAVE_KERNELS
    const float *norms[4] = {ADDRESS(const float *, v[3]), ADDRESS(const float *, v[4]),
                             ADDRESS(const float *, v[5]), ADDRESS(const float *, v[6])};
    linear_t layers[4];
    int64_t inputs[4] = {C, C, C, v[7 + 5 * 2 + 4]};
    for (int i = 0; i < 4; i++) {
        long long *l = v + 7 + 5 * i;
        layers[i] = (linear_t){(int)l[0], ADDRESS(const void *, l[1]),
                               ADDRESS(const float *, l[2]), ADDRESS(const float *, l[3]), l[4],
                               inputs[i]};
    }
    Py_BEGIN_ALLOW_THREADS
    status = block(ADDRESS(float *, v[0]), batch, C, norms, (float)eps, layers,
                   ADDRESS(float *, v[27]), ADDRESS(float *, v[28]), heads, max_len, t,
                   v[32] < 1 ? 1 : (int)v[32]);
    Py_END_ALLOW_THREADS
#endif
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef methods[] = {
    {"supported", py_supported, METH_NOARGS, "Whether this CPU runs the kernels."},
    {"matvec", FASTCALL(py_matvec),
     "matvec(kind, w, scale, x, bias, y, rows, out, n, accumulate, threads)"},
    {"attend", FASTCALL(py_attend),
     "attend(qkv, k_cache, v_cache, y, batch, heads, head_size, max_len, t, threads)"},
    {"layer_norm", FASTCALL(py_layer_norm), "layer_norm(x, weight, bias, y, rows, n, eps)"},
    {"block", FASTCALL(py_block), "block(x, batch, C, norms x 4, eps, 4 layers x 5, caches, ...)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_kernels", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
#ifdef _OPENMP
    const int openmp = 1;
#else
    const int openmp = 0;
#endif
    if (PyModule_AddIntConstant(m, "F32", F32) || PyModule_AddIntConstant(m, "F16", F16) ||
        PyModule_AddIntConstant(m, "I8", I8) || PyModule_AddIntConstant(m, "OPENMP", openmp)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
