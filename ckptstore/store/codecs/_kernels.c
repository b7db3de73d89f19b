/* The Python module of the codecs' C loops (kernels/loops.c): each function parses
   its arguments, checks that every buffer, width, group table and size fits before
   a loop runs, runs it without the GIL, and builds the result. native.py imports
   it; planes.py, grouping.py and estimate.py call it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "kernels/loops.h"

/* group_of_key: ``key_count`` bytes naming each key's group; sizes: the elements of
   each group, adding up to n (groups follow one another in the grouped order); biases:
   None, or one little-endian value of ``width`` bytes per group. */
static int read_layout(PyObject *group_of_key, PyObject *sizes, PyObject *biases, int width,
                       Py_ssize_t n, int key_count, Layout *layout)
{
    layout->grouped = 0;
    if (group_of_key == Py_None)
        return 0;
    Py_buffer keys;
    if (PyObject_GetBuffer(group_of_key, &keys, PyBUF_SIMPLE) < 0)
        return -1;
    int fits = keys.len == key_count;
    if (fits)
        memcpy(layout->group_of_key, keys.buf, key_count);
    PyBuffer_Release(&keys);
    if (!fits) {
        PyErr_Format(PyExc_ValueError, "group_of_key must be %d bytes", key_count);
        return -1;
    }
    PyObject *seq = PySequence_Fast(sizes, "sizes must be a sequence");
    if (!seq)
        return -1;
    Py_ssize_t groups = PySequence_Fast_GET_SIZE(seq), start = 0;
    if (groups < 1 || groups > key_count) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "1 to %d groups", key_count);
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
        layout->end[g] = start += size;
    }
    Py_DECREF(seq);
    if (start != n) {
        PyErr_SetString(PyExc_ValueError, "group sizes do not add up to the elements");
        return -1;
    }
    for (int key = 0; key < key_count; key++) {
        if (layout->group_of_key[key] >= groups) {
            PyErr_SetString(PyExc_ValueError, "a key maps to no group");
            return -1;
        }
    }
    memset(layout->bias, 0, sizeof(layout->bias));
    if (biases != Py_None) {
        Py_buffer values;
        if (PyObject_GetBuffer(biases, &values, PyBUF_SIMPLE) < 0)
            return -1;
        fits = values.len == groups * width;
        for (Py_ssize_t g = 0; fits && g < groups; g++)
            for (int byte = 0; byte < width; byte++)
                layout->bias[g] |= (uint64_t)((const uint8_t *)values.buf)[g * width + byte]
                                   << (8 * byte);
        PyBuffer_Release(&values);
        if (!fits) {
            PyErr_SetString(PyExc_ValueError, "biases must be one value per group");
            return -1;
        }
    }
    layout->grouped = 1;
    return 0;
}

/* What assemble and split share: (source, width, base|None, group_of_key|None, sizes,
   biases|None, target, scratch|None); scratch: at least n * width writable bytes
   where the elements are grouped and wider than one byte. n elements, n taken from
   the planes' length. */
static PyObject *run(PyObject *args, int into_planes, const Loop loops[9])
{
    Py_buffer source, target, base_buf = {0}, scratch_buf = {0};
    int width;
    PyObject *base, *group_of_key, *sizes, *biases, *scratch = Py_None, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*iOOOOw*|O", &source, &width, &base, &group_of_key, &sizes,
                          &biases, &target, &scratch))
        return NULL;
    Loop loop = width >= 1 && width <= 8 ? loops[width] : NULL;
    Py_ssize_t n = loop ? (into_planes ? target.len : source.len) / width : 0;
    Py_buffer *planes = into_planes ? &target : &source, *elements = into_planes ? &source : &target;
    Layout layout;
    if (!loop)
        PyErr_SetString(PyExc_ValueError, "width must be 1, 2, 4 or 8");
    else if (planes->len != n * width || elements->len < n * width)
        PyErr_SetString(PyExc_ValueError, "planes and elements do not fit");
    else if (base == Py_None && group_of_key != Py_None)
        PyErr_SetString(PyExc_ValueError, "grouping needs the base");
    else if (base != Py_None && PyObject_GetBuffer(base, &base_buf, PyBUF_SIMPLE) < 0)
        ; /* the error is set */
    else if (base != Py_None && base_buf.len < n * width)
        PyErr_SetString(PyExc_ValueError, "base is shorter than the elements");
    else if (scratch != Py_None &&
             PyObject_GetBuffer(scratch, &scratch_buf, PyBUF_WRITABLE) < 0)
        ; /* the error is set */
    else if (group_of_key != Py_None && width > 1 && scratch_buf.len < n * width)
        PyErr_SetString(PyExc_ValueError, "grouped elements need a scratch of their size");
    else if (read_layout(group_of_key, sizes, biases, width, n, CONTEXTS, &layout) == 0) {
        int failed;
        layout.scratch = scratch_buf.buf;
        Py_BEGIN_ALLOW_THREADS
        failed = loop(source.buf, base_buf.buf, target.buf, n, &layout);
        Py_END_ALLOW_THREADS
        if (failed)
            PyErr_SetString(PyExc_ValueError, "more elements of a group than its size");
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&source);
    PyBuffer_Release(&target);
    if (base_buf.obj)
        PyBuffer_Release(&base_buf);
    if (scratch_buf.obj)
        PyBuffer_Release(&scratch_buf);
    return result;
}

static PyObject *assemble(PyObject *self, PyObject *args)
{
    return run(args, 0, plane_assembles);
}

static PyObject *split(PyObject *self, PyObject *args) { return run(args, 1, plane_splits); }

/* split_exponents(raw, width, group_of_key, groups, planes, scratch) -> sizes: codec 7's
   planes of raw's n = len(planes) // width elements, grouped by ``group_of_key``
   (EXPONENT_KEYS bytes, each below ``groups``), and the size of each group; scratch:
   at least n * width writable bytes. */
static PyObject *split_exponents(PyObject *self, PyObject *args)
{
    Py_buffer raw, table, planes, scratch;
    int width;
    Py_ssize_t groups;
    if (!PyArg_ParseTuple(args, "y*iy*nw*w*", &raw, &width, &table, &groups, &planes, &scratch))
        return NULL;
    int known = width == 2 || width == 4 || width == 8;
    Py_ssize_t n = known ? planes.len / width : 0;
    PyObject *result = NULL;
    Layout layout;
    int valid = table.len == EXPONENT_KEYS && groups >= 1 && groups <= MAX_GROUPS;
    for (int key = 0; valid && key < EXPONENT_KEYS; key++)
        valid = ((const uint8_t *)table.buf)[key] < groups;
    if (!known)
        PyErr_SetString(PyExc_ValueError, "width must be 2, 4 or 8");
    else if (planes.len != n * width || raw.len < n * width || scratch.len < n * width)
        PyErr_SetString(PyExc_ValueError, "planes, elements and scratch do not fit");
    else if (!valid)
        PyErr_Format(PyExc_ValueError, "group_of_key must be %d bytes, each below groups (1 to %d)",
                     EXPONENT_KEYS, MAX_GROUPS);
    else {
        ptrdiff_t sizes[MAX_GROUPS];
        int failed;
        memcpy(layout.group_of_key, table.buf, EXPONENT_KEYS);
        Py_BEGIN_ALLOW_THREADS
        failed = split_exponents_loop(raw.buf, width, n, groups, &layout, scratch.buf, planes.buf,
                                      sizes);
        Py_END_ALLOW_THREADS
        if (failed) /* not with the keys just counted; checked all the same */
            PyErr_SetString(PyExc_ValueError, "more elements of a group than its size");
        else if ((result = PyList_New(groups)))
            for (Py_ssize_t g = 0; g < groups; g++)
                PyList_SET_ITEM(result, g, PyLong_FromSsize_t(sizes[g]));
    }
    PyBuffer_Release(&raw);
    PyBuffer_Release(&table);
    PyBuffer_Release(&planes);
    PyBuffer_Release(&scratch);
    return result;
}

/* assemble_exponents(planes, width, group_of_key, sizes, out, scratch): split_exponents
   undone, into ``out``; ValueError when the keys do not fill the sizes. */
static PyObject *assemble_exponents(PyObject *self, PyObject *args)
{
    Py_buffer planes, out, scratch;
    int width;
    PyObject *table, *sizes, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*iOOw*w*", &planes, &width, &table, &sizes, &out, &scratch))
        return NULL;
    ExponentLoop loop = width >= 2 && width <= 8 ? exponent_assembles[width] : NULL;
    Py_ssize_t n = loop ? planes.len / width : 0;
    Layout layout;
    if (!loop)
        PyErr_SetString(PyExc_ValueError, "width must be 2, 4 or 8");
    else if (planes.len != n * width || out.len < n * width || scratch.len < n * width)
        PyErr_SetString(PyExc_ValueError, "planes, elements and scratch do not fit");
    else if (table == Py_None)
        PyErr_SetString(PyExc_ValueError, "exponent planes are always grouped");
    else if (read_layout(table, sizes, Py_None, width, n, EXPONENT_KEYS, &layout) == 0) {
        int failed;
        Py_BEGIN_ALLOW_THREADS
        failed = loop(planes.buf, scratch.buf, out.buf, n, &layout);
        Py_END_ALLOW_THREADS
        if (failed)
            PyErr_SetString(PyExc_ValueError, "more elements of a group than its size");
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&planes);
    PyBuffer_Release(&out);
    PyBuffer_Release(&scratch);
    return result;
}

/* What key_counts and exponent_counts share: (data, width, stride) -> a list of the
   count of each key (CONTEXTS group keys of base elements, or EXPONENT_KEYS of codec
   7's keys). */
static PyObject *count_keys(PyObject *args, int exponents)
{
    Py_buffer buf;
    int width;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*in", &buf, &width, &stride))
        return NULL;
    int narrowest = exponents ? 2 : 1;
    if (width < narrowest || width > 8 || stride < 1) {
        PyBuffer_Release(&buf);
        PyErr_Format(PyExc_ValueError, "width %d to 8 and a positive stride", narrowest);
        return NULL;
    }
    ptrdiff_t counts[EXPONENT_KEYS];
    Py_BEGIN_ALLOW_THREADS
    count_keys_loop(buf.buf, width, buf.len / width, stride, exponents, counts);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    int keys = exponents ? EXPONENT_KEYS : CONTEXTS;
    PyObject *list = PyList_New(keys);
    if (!list)
        return NULL;
    for (int key = 0; key < keys; key++) {
        PyObject *count = PyLong_FromSsize_t(counts[key]);
        if (!count) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, key, count);
    }
    return list;
}

/* key_counts(base, width, stride): how many of the elements 0, stride, 2 * stride...
   have each group key, as a list of CONTEXTS ints. */
static PyObject *key_counts(PyObject *self, PyObject *args) { return count_keys(args, 0); }

/* exponent_counts(raw, width, stride): how many of the elements 0, stride, 2 * stride...
   have each of codec 7's keys (the top byte once rotated left a bit), as a list of
   EXPONENT_KEYS ints. */
static PyObject *exponent_counts(PyObject *self, PyObject *args) { return count_keys(args, 1); }

/* group_sizes(base, width, group_of_key, groups): how many of the base's whole
   elements fall in each group (a list of ``groups`` ints), their group keys'
   groups given by ``group_of_key`` (CONTEXTS bytes, each below ``groups``). */
static PyObject *group_sizes(PyObject *self, PyObject *args)
{
    Py_buffer base, table;
    int width;
    Py_ssize_t groups;
    if (!PyArg_ParseTuple(args, "y*iy*n", &base, &width, &table, &groups))
        return NULL;
    PyObject *result = NULL;
    int valid = table.len == CONTEXTS && groups >= 1 && groups <= CONTEXTS;
    for (int key = 0; valid && key < CONTEXTS; key++)
        valid = ((const uint8_t *)table.buf)[key] < groups;
    if (width != 1 && width != 2 && width != 4 && width != 8)
        PyErr_SetString(PyExc_ValueError, "width must be 1, 2, 4 or 8");
    else if (!valid)
        PyErr_SetString(PyExc_ValueError, "group_of_key must be 128 bytes, each below groups "
                                          "(1 to 128)");
    else {
        ptrdiff_t sizes[CONTEXTS];
        Py_BEGIN_ALLOW_THREADS
        group_sizes_loop(base.buf, width, base.len / width, table.buf, groups, sizes);
        Py_END_ALLOW_THREADS
        if ((result = PyList_New(groups)))
            for (Py_ssize_t g = 0; g < groups; g++)
                PyList_SET_ITEM(result, g, PyLong_FromSsize_t(sizes[g]));
    }
    PyBuffer_Release(&base);
    PyBuffer_Release(&table);
    return result;
}

/* vector_loops(enabled) -> whether they were: the loops' vector instructions on or
   off (where the CPU has them; tests compare both ways). */
static PyObject *set_vector_loops(PyObject *self, PyObject *args)
{
    int enabled, was = vector_loops;
    if (!PyArg_ParseTuple(args, "p", &enabled))
        return NULL;
    vector_loops = enabled;
    return PyBool_FromLong(was);
}

/* gain_counts(raw, base, width, stride, group_of_key, groups, biases): what
   grouping_gain_bits (estimate.py) needs of the elements 0, stride, 2 * stride...: the
   bit length (0 to CODE_LENGTHS - 1) of each one's zigzag code against the base
   element, plain and less its group's bias, counted as (joint: groups x CODE_LENGTHS
   counts of group and biased length, plain: CODE_LENGTHS counts of plain length,
   the sums of max(length - 1, 0) of both). */
static PyObject *gain_counts(PyObject *self, PyObject *args)
{
    Py_buffer raw, base, table, bias_buf = {0};
    int width;
    Py_ssize_t stride, groups;
    PyObject *biases, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*iny*nO", &raw, &base, &width, &stride, &table, &groups,
                          &biases))
        return NULL;
    Py_ssize_t n = raw.len / width;
    ptrdiff_t *joint = NULL;
    const uint8_t *group_of_key = table.buf;
    if (width != 1 && width != 2 && width != 4 && width != 8)
        PyErr_SetString(PyExc_ValueError, "width must be 1, 2, 4 or 8");
    else if (stride < 1 || base.len < n * width)
        PyErr_SetString(PyExc_ValueError, "a positive stride and a base as long as the raw");
    else if (table.len != CONTEXTS || groups < 1 || groups > CONTEXTS)
        PyErr_SetString(PyExc_ValueError, "group_of_key must be 128 bytes, of 1 to 128 groups");
    else if (biases != Py_None && PyObject_GetBuffer(biases, &bias_buf, PyBUF_SIMPLE) < 0)
        ; /* the error is set */
    else if (biases != Py_None && bias_buf.len != groups * width)
        PyErr_SetString(PyExc_ValueError, "biases must be one value per group");
    else if (!(joint = PyMem_Calloc(groups * CODE_LENGTHS, sizeof(ptrdiff_t))))
        PyErr_NoMemory();
    else {
        uint64_t bias[CONTEXTS] = {0};
        int valid = 1;
        for (Py_ssize_t g = 0; g < groups && bias_buf.obj; g++)
            for (int byte = 0; byte < width; byte++)
                bias[g] |= (uint64_t)((const uint8_t *)bias_buf.buf)[g * width + byte]
                           << (8 * byte);
        for (int key = 0; key < CONTEXTS; key++)
            valid &= group_of_key[key] < groups;
        if (!valid) {
            PyErr_SetString(PyExc_ValueError, "a key maps to no group");
        } else {
            ptrdiff_t plain[CODE_LENGTHS] = {0}, below_plain = 0, below_shifted = 0;
            Py_BEGIN_ALLOW_THREADS
            gain_counts_loop(raw.buf, base.buf, width, n, stride, group_of_key, bias, joint, plain,
                             &below_plain, &below_shifted);
            Py_END_ALLOW_THREADS
            PyObject *joint_list = PyList_New(groups * CODE_LENGTHS);
            PyObject *plain_list = PyList_New(CODE_LENGTHS);
            for (Py_ssize_t k = 0; joint_list && k < groups * CODE_LENGTHS; k++)
                PyList_SET_ITEM(joint_list, k, PyLong_FromSsize_t(joint[k]));
            for (Py_ssize_t k = 0; plain_list && k < CODE_LENGTHS; k++)
                PyList_SET_ITEM(plain_list, k, PyLong_FromSsize_t(plain[k]));
            if (joint_list && plain_list && !PyErr_Occurred())
                result = Py_BuildValue("(OOnn)", joint_list, plain_list, below_plain,
                                       below_shifted);
            Py_XDECREF(joint_list);
            Py_XDECREF(plain_list);
        }
    }
    PyMem_Free(joint);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&base);
    PyBuffer_Release(&table);
    if (bias_buf.obj)
        PyBuffer_Release(&bias_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"assemble", assemble, METH_VARARGS,
     "assemble(planes, width, base, group_of_key, sizes, biases, out, scratch=None): elements "
     "from planes."},
    {"split", split, METH_VARARGS,
     "split(raw, width, base, group_of_key, sizes, biases, planes, scratch=None): planes of "
     "elements."},
    {"key_counts", key_counts, METH_VARARGS,
     "key_counts(base, width, stride): counts of each key, every stride-th element."},
    {"assemble_exponents", assemble_exponents, METH_VARARGS,
     "assemble_exponents(planes, width, group_of_key, sizes, out, scratch): elements from "
     "codec 7's planes."},
    {"split_exponents", split_exponents, METH_VARARGS,
     "split_exponents(raw, width, group_of_key, groups, planes, scratch) -> sizes: codec 7's "
     "planes of elements."},
    {"exponent_counts", exponent_counts, METH_VARARGS,
     "exponent_counts(raw, width, stride): counts of codec 7's keys, every stride-th element."},
    {"group_sizes", group_sizes, METH_VARARGS,
     "group_sizes(base, width, group_of_key, groups): how many elements fall in each group."},
    {"vector_loops", set_vector_loops, METH_VARARGS,
     "vector_loops(enabled) -> bool: vector instructions on or off; returns the last setting."},
    {"gain_counts", gain_counts, METH_VARARGS,
     "gain_counts(raw, base, width, stride, group_of_key, groups, biases): the counts "
     "grouping_gain_bits judges by."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_kernels", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
