/* The monitor's fused CPU reductions: one pass over a block of memory where the torch path needs a handful
 * of kernels, each costing 5-20 us of dispatch on the CPU whatever its size (more when its code is cold after
 * a backward pass); and, for update ratios, a copy of many weights into one buffer and one pass comparing
 * them with it after the optimizer step. See initlab/monitor/probes.py, which checks device, dtype, layout
 * and size before passing raw addresses here, and falls back to torch kernels when this module was not built
 * (no C compiler).
 *
 * No torch headers: plain C over float32/float64 memory, so it builds in a fraction of a second with any C
 * compiler. Each loop sums BLOCK elements in the input precision, then adds them to double totals (float32
 * partial sums of 256 terms, which the compiler splits into vector lanes: rounding near 1e-7 relative, as in
 * torch's own float32 sums). setup.py allows that reassociation (-fassociative-math, without which gcc keeps
 * a float sum in order, one element at a time: 4-5x slower here); NaN and Inf still propagate. Squares of
 * float32 values beyond ~1.8e19 overflow to Inf, as in torch's own float32 norms (a test pins both). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 256

/* sum, sum of squares, count of x > 0, count of x >= hi, count of x <= lo (NaN counts nowhere). */
#define DEFINE_SUMS(NAME, T)                                                                    \
    static void NAME(const T *x, Py_ssize_t n, T hi, T lo, double out[5]) {                     \
        double total[5] = {0, 0, 0, 0, 0};                                                      \
        for (Py_ssize_t start = 0; start < n; start += BLOCK) {                                 \
            const T *p = x + start;                                                             \
            int len = n - start < BLOCK ? (int)(n - start) : BLOCK;                             \
            T s = 0, ss = 0, pos = 0, above = 0, below = 0;                                     \
            for (int i = 0; i < len; i++) {                                                     \
                T v = p[i];                                                                     \
                s += v;                                                                         \
                ss += v * v;                                                                    \
                pos += v > 0;                                                                   \
                above += v >= hi;                                                               \
                below += v <= lo;                                                               \
            }                                                                                   \
            total[0] += s;                                                                      \
            total[1] += ss;                                                                     \
            total[2] += pos;                                                                    \
            total[3] += above;                                                                  \
            total[4] += below;                                                                  \
        }                                                                                       \
        for (int k = 0; k < 5; k++) out[k] = total[k];                                          \
    }

/* sum of squares */
#define DEFINE_SUMSQ(NAME, T)                                                                   \
    static double NAME(const T *x, Py_ssize_t n) {                                              \
        double total = 0;                                                                       \
        for (Py_ssize_t start = 0; start < n; start += BLOCK) {                                 \
            const T *p = x + start;                                                             \
            int len = n - start < BLOCK ? (int)(n - start) : BLOCK;                             \
            T ss = 0;                                                                           \
            for (int i = 0; i < len; i++) ss += p[i] * p[i];                                    \
            total += ss;                                                                        \
        }                                                                                       \
        return total;                                                                           \
    }

/* sum of squares of after - before, and of after */
#define DEFINE_UPDATE_SUMSQ(NAME, T)                                                            \
    static void NAME(const T *after, const T *before, Py_ssize_t n, double out[2]) {            \
        double total[2] = {0, 0};                                                               \
        for (Py_ssize_t start = 0; start < n; start += BLOCK) {                                 \
            const T *a = after + start, *b = before + start;                                    \
            int len = n - start < BLOCK ? (int)(n - start) : BLOCK;                             \
            T dd = 0, aa = 0;                                                                   \
            for (int i = 0; i < len; i++) {                                                     \
                T d = a[i] - b[i];                                                              \
                dd += d * d;                                                                    \
                aa += a[i] * a[i];                                                              \
            }                                                                                   \
            total[0] += dd;                                                                     \
            total[1] += aa;                                                                     \
        }                                                                                       \
        out[0] = total[0];                                                                      \
        out[1] = total[1];                                                                      \
    }

DEFINE_SUMS(sums_f32, float)
DEFINE_SUMS(sums_f64, double)
DEFINE_SUMSQ(sumsq_f32, float)
DEFINE_SUMSQ(sumsq_f64, double)
DEFINE_UPDATE_SUMSQ(update_sumsq_f32, float)
DEFINE_UPDATE_SUMSQ(update_sumsq_f64, double)

static const void *address(PyObject *obj) { return (const void *)(uintptr_t)PyLong_AsUnsignedLongLong(obj); }

static PyObject *sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "sums(address, count, float64, hi, lo) takes 5 arguments");
        return NULL;
    }
    const void *x = address(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    int f64 = PyObject_IsTrue(args[2]);
    double hi = PyFloat_AsDouble(args[3]), lo = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (n < 0 || (n > 0 && x == NULL)) {
        PyErr_SetString(PyExc_ValueError, "sums: a negative count or a null address");
        return NULL;
    }
    double out[5];
    if (f64)
        sums_f64((const double *)x, n, hi, lo, out);
    else
        sums_f32((const float *)x, n, (float)hi, (float)lo, out);
    return Py_BuildValue("(ddddd)", out[0], out[1], out[2], out[3], out[4]);
}

/* The list functions' shared argument check: ``expected`` arguments, the first two lists of addresses and
 * counts of one length, the third float64; for snapshot and update_sumsq the fourth the buffer's address. */
static int segments(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected, const char *usage,
                    Py_ssize_t *m, int *f64, char **buffer) {
    if (nargs != expected || !PyList_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *m = PyList_GET_SIZE(args[0]);
    *f64 = PyObject_IsTrue(args[2]);
    if (*f64 < 0) return -1;
    if (PyList_GET_SIZE(args[1]) != *m) {
        PyErr_SetString(PyExc_ValueError, "as many counts as addresses");
        return -1;
    }
    if (buffer != NULL) {
        *buffer = (char *)address(args[3]);
        if (PyErr_Occurred()) return -1;
        if (*buffer == NULL) {
            PyErr_SetString(PyExc_ValueError, "a null buffer address");
            return -1;
        }
    }
    return 0;
}

/* The j-th address and count. Address 0 stands for an absent tensor where ``absent_ok`` (sumsq: a parameter
 * without a gradient this step), else only with a count of 0. */
static int segment(PyObject *const *args, Py_ssize_t j, int absent_ok, const void **x, Py_ssize_t *n) {
    *x = address(PyList_GET_ITEM(args[0], j));
    *n = PyLong_AsSsize_t(PyList_GET_ITEM(args[1], j));
    if (PyErr_Occurred()) return -1;
    if (*n < 0 || (*n > 0 && *x == NULL && !absent_ok)) {
        PyErr_SetString(PyExc_ValueError, "a negative count or a null address");
        return -1;
    }
    return 0;
}

/* Sets out[i] to a new float from value; on failure drops out. */
static int set_float(PyObject *out, Py_ssize_t i, double value) {
    PyObject *item = PyFloat_FromDouble(value);
    if (item == NULL) {
        Py_DECREF(out);
        return -1;
    }
    PyList_SET_ITEM(out, i, item);
    return 0;
}

static PyObject *sumsq(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t m, n;
    int f64;
    const void *x;
    if (segments(args, nargs, 3, "sumsq(addresses: list, counts: list, float64) takes 3 arguments", &m, &f64,
                 NULL) < 0)
        return NULL;
    PyObject *out = PyList_New(m);
    if (out == NULL) return NULL;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (segment(args, j, 1, &x, &n) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        double value = x == NULL ? 0.0 : f64 ? sumsq_f64((const double *)x, n) : sumsq_f32((const float *)x, n);
        if (set_float(out, j, value) < 0) return NULL;
    }
    return out;
}

static PyObject *snapshot(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t m, n;
    int f64;
    char *out;
    const void *x;
    if (segments(args, nargs, 4, "snapshot(addresses: list, counts: list, float64, destination) takes 4 arguments",
                 &m, &f64, &out) < 0)
        return NULL;
    size_t size = f64 ? sizeof(double) : sizeof(float);
    for (Py_ssize_t j = 0; j < m; j++) {
        if (segment(args, j, 0, &x, &n) < 0) return NULL;
        if (n > 0) memcpy(out, x, (size_t)n * size); /* memcpy from a null address is undefined even for 0 */
        out += (size_t)n * size;
    }
    Py_RETURN_NONE;
}

static PyObject *update_sumsq(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t m, n;
    int f64;
    char *before;
    const void *x;
    if (segments(args, nargs, 4, "update_sumsq(addresses: list, counts: list, float64, snapshot) takes 4 arguments",
                 &m, &f64, &before) < 0)
        return NULL;
    size_t size = f64 ? sizeof(double) : sizeof(float);
    PyObject *out = PyList_New(2 * m);
    if (out == NULL) return NULL;
    for (Py_ssize_t j = 0; j < m; j++) {
        double sq[2];
        if (segment(args, j, 0, &x, &n) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (f64)
            update_sumsq_f64((const double *)x, (const double *)before, n, sq);
        else
            update_sumsq_f32((const float *)x, (const float *)before, n, sq);
        before += (size_t)n * size;
        if (set_float(out, 2 * j, sq[0]) < 0 || set_float(out, 2 * j + 1, sq[1]) < 0) return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"sums", (PyCFunction)(void (*)(void))sums, METH_FASTCALL,
     "sums(address, count, float64, hi, lo) -> (sum, sum of squares, count > 0, count >= hi, count <= lo)"},
    {"sumsq", (PyCFunction)(void (*)(void))sumsq, METH_FASTCALL,
     "sumsq(addresses, counts, float64) -> sums of squares (0.0 where the address is 0)"},
    {"snapshot", (PyCFunction)(void (*)(void))snapshot, METH_FASTCALL,
     "snapshot(addresses, counts, float64, destination): copy the values one after another to destination"},
    {"update_sumsq", (PyCFunction)(void (*)(void))update_sumsq, METH_FASTCALL,
     "update_sumsq(addresses, counts, float64, snapshot) -> [sum (x - before)^2, sum x^2, ...] per address"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "The monitor's fused CPU reductions.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&module); }
