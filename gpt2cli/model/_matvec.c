/* Matrix-vector products for CPU decoding: a few rows of fp32 activations times a row-major
 * weight held as fp32, fp16 or int8 (one fp32 scale per output row), fp32 out.
 *
 * Decoding one token reads every weight once, so its speed is how fast the weights stream from
 * memory. Each thread takes a contiguous block of output rows and reads each weight row front
 * to back, once for all activation rows (the row stays in L1 for the others), widening fp16 /
 * int8 in registers (F16C, AVX2). Sums run in fp32 over 32 columns at a time.
 *
 * Built by setup.py as an optional extension (gpt2cli.model._matvec); gpt2cli.model.cpu_kernels
 * uses it when it imports and supported() says the CPU has AVX2, FMA and F16C, and torch's
 * kernels otherwise. Threads: OpenMP, the runtime torch's CPU build also uses. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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

static int cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#else
#define HAVE_KERNELS 0
static int cpu_supported(void) { return 0; }
#endif

static PyObject *py_supported(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(cpu_supported());
}

/* matvec(kind, w, scale, x, bias, y, rows, out, n, accumulate, threads): the pointers are
 * addresses (0 for no scale / no bias); the caller keeps the tensors alive and checks shapes. */
static PyObject *py_matvec(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "matvec takes 11 arguments");
        return NULL;
    }
    long long v[11];
    for (Py_ssize_t i = 0; i < 11; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) return NULL;
    }
    int kind = (int)v[0];
    if (kind < F32 || kind > I8 || v[6] < 0 || v[7] < 0 || v[8] < 0 || !v[1] || !v[3] || !v[5]) {
        PyErr_SetString(PyExc_ValueError, "matvec: bad kind, size or address");
        return NULL;
    }
    if (!cpu_supported()) {
        PyErr_SetString(PyExc_RuntimeError, "matvec: this CPU lacks AVX2, FMA or F16C");
        return NULL;
    }
#if HAVE_KERNELS
    Py_BEGIN_ALLOW_THREADS
    matvec(kind, (const void *)(intptr_t)v[1], (const float *)(intptr_t)v[2],
           (const float *)(intptr_t)v[3], (const float *)(intptr_t)v[4], (float *)(intptr_t)v[5],
           v[6], v[7], v[8], (int)v[9], v[10] < 1 ? 1 : (int)v[10]);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"supported", py_supported, METH_NOARGS, "Whether this CPU runs the kernels."},
    {"matvec", (PyCFunction)(void (*)(void))py_matvec, METH_FASTCALL,
     "matvec(kind, w, scale, x, bias, y, rows, out, n, accumulate, threads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_matvec", NULL, -1, methods};

PyMODINIT_FUNC PyInit__matvec(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "F32", F32) || PyModule_AddIntConstant(m, "F16", F16) ||
        PyModule_AddIntConstant(m, "I8", I8)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
