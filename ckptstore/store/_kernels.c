/* Fused loops for byte planes (planes.py): a block's elements to and from the
   planes that codecs 4 to 6 compress, in one pass over memory each way. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CONTEXTS 128
#define MAX_GROUPS CONTEXTS

typedef struct {
    int grouped;
    uint8_t group_of_key[CONTEXTS];
    Py_ssize_t cursor[MAX_GROUPS];
    Py_ssize_t end[MAX_GROUPS];
} Layout;

/* starts: n_groups int64 start offsets (ascending); group_of_key: 128 bytes. */
static int read_layout(PyObject *group_of_key, PyObject *sizes, Py_ssize_t n, Layout *layout)
{
    layout->grouped = 0;
    if (group_of_key == Py_None)
        return 0;
    Py_buffer keys;
    if (PyObject_GetBuffer(group_of_key, &keys, PyBUF_SIMPLE) < 0)
        return -1;
    if (keys.len != CONTEXTS) {
        PyBuffer_Release(&keys);
        PyErr_SetString(PyExc_ValueError, "group_of_key must be 128 bytes");
        return -1;
    }
    memcpy(layout->group_of_key, keys.buf, CONTEXTS);
    PyBuffer_Release(&keys);
    PyObject *seq = PySequence_Fast(sizes, "sizes must be a sequence");
    if (!seq)
        return -1;
    Py_ssize_t groups = PySequence_Fast_GET_SIZE(seq), start = 0;
    if (groups < 1 || groups > MAX_GROUPS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "1 to 128 groups");
        return -1;
    }
    for (Py_ssize_t g = 0; g < groups; g++) {
        Py_ssize_t size = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, g));
        if (size < 0 || size > n - start) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "group sizes exceed the elements");
            return -1;
        }
        layout->cursor[g] = start;
        start += size;
        layout->end[g] = start;
    }
    Py_DECREF(seq);
    if (start != n) {
        PyErr_SetString(PyExc_ValueError, "group sizes do not add up to the elements");
        return -1;
    }
    for (int key = 0; key < CONTEXTS; key++) {
        if (layout->group_of_key[key] >= groups) {
            PyErr_SetString(PyExc_ValueError, "a key maps to no group");
            return -1;
        }
    }
    layout->grouped = 1;
    return 0;
}

#define ASSEMBLE(T, W)                                                                     \
    for (Py_ssize_t i = 0; i < n; i++) {                                                   \
        Py_ssize_t j = i;                                                                  \
        if (layout.grouped) {                                                              \
            uint8_t g = layout.group_of_key[bases[i * W + W - 1] & (CONTEXTS - 1)];        \
            j = layout.cursor[g]++;                                                        \
            if (j >= layout.end[g]) {                                                      \
                overflow = 1;                                                              \
                break;                                                                     \
            }                                                                              \
        }                                                                                  \
        T code = 0;                                                                        \
        for (int lane = 0; lane < W; lane++)                                               \
            code |= (T)planes[(Py_ssize_t)lane * n + j] << (8 * lane);                     \
        if (bases) {                                                                       \
            T b;                                                                           \
            memcpy(&b, bases + i * W, W);                                                  \
            code = (T)(((T)(code >> 1) ^ (T)(0 - (code & 1))) + b);                        \
        }                                                                                  \
        memcpy(outs + i * W, &code, W);                                                    \
    }

/* assemble(planes, width, base|None, group_of_key|None, sizes, out): out's n*width
   bytes from the planes of n elements; with a base, planes hold zigzag deltas on it;
   with group_of_key, planes hold the elements grouped by their base's key. */
static PyObject *assemble(PyObject *self, PyObject *args)
{
    Py_buffer planes_buf, out_buf, base_buf = {0};
    int width;
    PyObject *base, *group_of_key, *sizes;
    if (!PyArg_ParseTuple(args, "y*iOOOw*", &planes_buf, &width, &base, &group_of_key, &sizes,
                          &out_buf))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = width > 0 ? planes_buf.len / width : 0;
    Layout layout;
    if (width != 1 && width != 2 && width != 4 && width != 8) {
        PyErr_SetString(PyExc_ValueError, "width must be 1, 2, 4 or 8");
        goto done;
    }
    if (planes_buf.len != n * width || out_buf.len < n * width) {
        PyErr_SetString(PyExc_ValueError, "planes and out do not fit");
        goto done;
    }
    if (base != Py_None) {
        if (PyObject_GetBuffer(base, &base_buf, PyBUF_SIMPLE) < 0)
            goto done;
        if (base_buf.len < n * width) {
            PyErr_SetString(PyExc_ValueError, "base is shorter than the elements");
            goto done;
        }
    } else if (group_of_key != Py_None) {
        PyErr_SetString(PyExc_ValueError, "grouping needs the base");
        goto done;
    }
    if (read_layout(group_of_key, sizes, n, &layout) < 0)
        goto done;
    {
        const uint8_t *planes = planes_buf.buf;
        const uint8_t *bases = base_buf.buf;
        uint8_t *outs = out_buf.buf;
        int overflow = 0;
        Py_BEGIN_ALLOW_THREADS
        switch (width) {
        case 1: ASSEMBLE(uint8_t, 1) break;
        case 2: ASSEMBLE(uint16_t, 2) break;
        case 4: ASSEMBLE(uint32_t, 4) break;
        default: ASSEMBLE(uint64_t, 8) break;
        }
        Py_END_ALLOW_THREADS
        if (overflow) {
            PyErr_SetString(PyExc_ValueError, "more elements of a group than its size");
            goto done;
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&planes_buf);
    PyBuffer_Release(&out_buf);
    if (base_buf.obj)
        PyBuffer_Release(&base_buf);
    return result;
}

#define SPLIT(T, W)                                                                        \
    for (Py_ssize_t i = 0; i < n; i++) {                                                   \
        T code;                                                                            \
        memcpy(&code, raws + i * W, W);                                                    \
        if (bases) {                                                                       \
            T b;                                                                           \
            memcpy(&b, bases + i * W, W);                                                  \
            T d = (T)(code - b);                                                           \
            code = (T)((T)(d << 1) ^ (T)(0 - (T)(d >> (8 * W - 1))));                      \
        }                                                                                  \
        Py_ssize_t j = i;                                                                  \
        if (layout.grouped) {                                                              \
            uint8_t g = layout.group_of_key[bases[i * W + W - 1] & (CONTEXTS - 1)];        \
            j = layout.cursor[g]++;                                                        \
            if (j >= layout.end[g]) {                                                      \
                overflow = 1;                                                              \
                break;                                                                     \
            }                                                                              \
        }                                                                                  \
        for (int lane = 0; lane < W; lane++)                                               \
            planes[(Py_ssize_t)lane * n + j] = (uint8_t)(code >> (8 * lane));              \
    }

/* split(raw, width, base|None, group_of_key|None, sizes, planes): the inverse of
   assemble: the planes of raw's n elements (of their zigzag deltas on base). */
static PyObject *split(PyObject *self, PyObject *args)
{
    Py_buffer raw_buf, planes_buf, base_buf = {0};
    int width;
    PyObject *base, *group_of_key, *sizes;
    if (!PyArg_ParseTuple(args, "y*iOOOw*", &raw_buf, &width, &base, &group_of_key, &sizes,
                          &planes_buf))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = width > 0 ? planes_buf.len / width : 0;
    Layout layout;
    if (width != 1 && width != 2 && width != 4 && width != 8) {
        PyErr_SetString(PyExc_ValueError, "width must be 1, 2, 4 or 8");
        goto done;
    }
    if (planes_buf.len != n * width || raw_buf.len < n * width) {
        PyErr_SetString(PyExc_ValueError, "raw and planes do not fit");
        goto done;
    }
    if (base != Py_None) {
        if (PyObject_GetBuffer(base, &base_buf, PyBUF_SIMPLE) < 0)
            goto done;
        if (base_buf.len < n * width) {
            PyErr_SetString(PyExc_ValueError, "base is shorter than the elements");
            goto done;
        }
    } else if (group_of_key != Py_None) {
        PyErr_SetString(PyExc_ValueError, "grouping needs the base");
        goto done;
    }
    if (read_layout(group_of_key, sizes, n, &layout) < 0)
        goto done;
    {
        const uint8_t *raws = raw_buf.buf;
        const uint8_t *bases = base_buf.buf;
        uint8_t *planes = planes_buf.buf;
        int overflow = 0;
        Py_BEGIN_ALLOW_THREADS
        switch (width) {
        case 1: SPLIT(uint8_t, 1) break;
        case 2: SPLIT(uint16_t, 2) break;
        case 4: SPLIT(uint32_t, 4) break;
        default: SPLIT(uint64_t, 8) break;
        }
        Py_END_ALLOW_THREADS
        if (overflow) {
            PyErr_SetString(PyExc_ValueError, "more elements of a group than its size");
            goto done;
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&raw_buf);
    PyBuffer_Release(&planes_buf);
    if (base_buf.obj)
        PyBuffer_Release(&base_buf);
    return result;
}

/* key_counts(base, width, stride): how many of the elements 0, stride, 2*stride...
   have each group key (the top byte, sign bit dropped), as a list of 128 ints. */
static PyObject *key_counts(PyObject *self, PyObject *args)
{
    Py_buffer base_buf;
    int width;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*in", &base_buf, &width, &stride))
        return NULL;
    if (width < 1 || width > 8 || stride < 1) {
        PyBuffer_Release(&base_buf);
        PyErr_SetString(PyExc_ValueError, "width 1 to 8 and a positive stride");
        return NULL;
    }
    Py_ssize_t counts[CONTEXTS] = {0};
    Py_ssize_t n = base_buf.len / width;
    const uint8_t *bases = base_buf.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i += stride)
        counts[bases[i * width + width - 1] & (CONTEXTS - 1)]++;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&base_buf);
    PyObject *list = PyList_New(CONTEXTS);
    if (!list)
        return NULL;
    for (int key = 0; key < CONTEXTS; key++) {
        PyObject *count = PyLong_FromSsize_t(counts[key]);
        if (!count) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, key, count);
    }
    return list;
}

static PyMethodDef methods[] = {
    {"assemble", assemble, METH_VARARGS, "Elements from their (grouped, delta) planes."},
    {"split", split, METH_VARARGS, "(Grouped, delta) planes of elements."},
    {"key_counts", key_counts, METH_VARARGS, "Group key counts of every stride-th element."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
