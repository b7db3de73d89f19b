/* The loops of planes.split_planes and planes.join_planes: a block's whole elements
   to and from the byte planes that codecs 4 to 6 compress, in one pass over memory
   each way, with the zigzag delta on a base block, the grouping of elements by
   their base's key and a bias per group folded in; and those of
   planes.split_exponents and planes.join_exponents, codec 7's planes of elements
   grouped by their own exponent (planes.py does the same in numpy). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CONTEXTS 128 /* group keys: a base element's top byte, sign bit dropped */
#define EXPONENT_KEYS 256 /* codec 7's keys: an element's top byte once rotated left a bit */
#define MAX_GROUPS EXPONENT_KEYS

typedef struct {
    int grouped;
    uint8_t group_of_key[EXPONENT_KEYS];
    Py_ssize_t cursor[MAX_GROUPS]; /* where the group's next element goes */
    Py_ssize_t end[MAX_GROUPS];    /* ... and where the group ends */
    uint64_t bias[MAX_GROUPS];     /* what the group's differences lose (codec 6) */
    uint8_t *scratch;              /* n elements in grouped order (grouped, width > 1) */
} Layout;

static inline int key_of(const uint8_t *bases, int width, Py_ssize_t i)
{
    return bases[i * width + width - 1] & (CONTEXTS - 1);
}

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

/* Where element i goes in the grouped order, its group in *group; -1 when its group
   already holds as many elements as its size. */
static inline Py_ssize_t place(Layout *layout, const uint8_t *bases, int width, Py_ssize_t i,
                               uint8_t *group)
{
    uint8_t g = *group = layout->group_of_key[key_of(bases, width, i)];
    Py_ssize_t j = layout->cursor[g]++;
    return j < layout->end[g] ? j : -1;
}

/* For each width W: assemble_W (planes -> elements) and split_W (elements -> planes),
   element i taking place j of the planes (grouped, with a width above 1, through
   layout->scratch). Both return 0, or -1 when a group holds
   more elements than its size (then nothing was written past the group: the caller
   raises). The loops without groups are apart, so that the compiler vectorizes them. */
#define DEFINE_LOOPS(T, W)                                                                 \
    /* element i of raws -> its code: the zigzag of its difference from the base           \
       element less the bias, or the element itself without bases */                       \
    static inline T code_of_##W(const uint8_t *raws, const uint8_t *bases, Py_ssize_t i,   \
                                T bias)                                                    \
    {                                                                                      \
        T code;                                                                            \
        memcpy(&code, raws + i * W, W);                                                    \
        if (bases) {                                                                       \
            T base;                                                                        \
            memcpy(&base, bases + i * W, W);                                               \
            T diff = (T)(code - base - bias);                                              \
            code = (T)((T)(diff << 1) ^ (T)(0 - (T)(diff >> (8 * W - 1))));                \
        }                                                                                  \
        return code;                                                                       \
    }                                                                                      \
    /* code_of undone, to element i of outs */                                             \
    static inline void put_code_##W(T code, const uint8_t *bases, uint8_t *outs, Py_ssize_t i,\
                                    T bias)                                                \
    {                                                                                      \
        if (bases) {                                                                       \
            T base;                                                                        \
            memcpy(&base, bases + i * W, W);                                               \
            code = (T)((T)((T)(code >> 1) ^ (T)(0 - (T)(code & 1))) + base + bias);        \
        }                                                                                  \
        memcpy(outs + i * W, &code, W);                                                    \
    }                                                                                      \
    static inline T gather_##W(const uint8_t *planes, Py_ssize_t n, Py_ssize_t j)          \
    {                                                                                      \
        T code = 0;                                                                        \
        for (int lane = 0; lane < W; lane++)                                               \
            code |= (T)planes[(Py_ssize_t)lane * n + j] << (8 * lane);                     \
        return code;                                                                       \
    }                                                                                      \
    static inline void scatter_##W(T code, uint8_t *planes, Py_ssize_t n, Py_ssize_t j)    \
    {                                                                                      \
        for (int lane = 0; lane < W; lane++)                                               \
            planes[(Py_ssize_t)lane * n + j] = (uint8_t)(code >> (8 * lane));              \
    }                                                                                      \
    /* Grouped, a wide element's W bytes would go to or come from W places far apart:      \
       its code goes to (comes from) scratch in grouped order instead, which one plain     \
       pass turns into (makes from) the planes (fp32: split 1.5x, assemble 1.25x). */    \
    static int assemble_##W(const uint8_t *restrict planes, const uint8_t *restrict bases, \
                            uint8_t *restrict outs, Py_ssize_t n, Layout *layout)          \
    {                                                                                      \
        if (!layout->grouped) {                                                            \
            if (bases)                                                                     \
                for (Py_ssize_t i = 0; i < n; i++)                                         \
                    put_code_##W(gather_##W(planes, n, i), bases, outs, i, 0);             \
            else                                                                           \
                for (Py_ssize_t i = 0; i < n; i++)                                         \
                    put_code_##W(gather_##W(planes, n, i), NULL, outs, i, 0);              \
            return 0;                                                                      \
        }                                                                                  \
        uint8_t *codes = layout->scratch;                                                  \
        for (Py_ssize_t j = 0; W > 1 && j < n; j++) {                                      \
            T code = gather_##W(planes, n, j);                                             \
            memcpy(codes + j * W, &code, W);                                               \
        }                                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            uint8_t g;                                                                     \
            Py_ssize_t j = place(layout, bases, W, i, &g);                                 \
            if (j < 0)                                                                     \
                return -1;                                                                 \
            T code = planes[j];                                                            \
            if (W > 1)                                                                     \
                memcpy(&code, codes + j * W, W);                                           \
            put_code_##W(code, bases, outs, i, (T)layout->bias[g]);                        \
        }                                                                                  \
        return 0;                                                                          \
    }                                                                                      \
    static int split_##W(const uint8_t *restrict raws, const uint8_t *restrict bases,      \
                         uint8_t *restrict planes, Py_ssize_t n, Layout *layout)           \
    {                                                                                      \
        if (!layout->grouped) {                                                            \
            if (bases)                                                                     \
                for (Py_ssize_t i = 0; i < n; i++)                                         \
                    scatter_##W(code_of_##W(raws, bases, i, 0), planes, n, i);             \
            else                                                                           \
                for (Py_ssize_t i = 0; i < n; i++)                                         \
                    scatter_##W(code_of_##W(raws, NULL, i, 0), planes, n, i);              \
            return 0;                                                                      \
        }                                                                                  \
        uint8_t *codes = layout->scratch;                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            uint8_t g;                                                                     \
            Py_ssize_t j = place(layout, bases, W, i, &g);                                 \
            if (j < 0)                                                                     \
                return -1;                                                                 \
            T code = code_of_##W(raws, bases, i, (T)layout->bias[g]);                      \
            if (W == 1)                                                                    \
                planes[j] = (uint8_t)code;                                                 \
            else                                                                           \
                memcpy(codes + j * W, &code, W);                                           \
        }                                                                                  \
        for (Py_ssize_t j = 0; W > 1 && j < n; j++) {                                      \
            T code;                                                                        \
            memcpy(&code, codes + j * W, W);                                               \
            scatter_##W(code, planes, n, j);                                               \
        }                                                                                  \
        return 0;                                                                          \
    }

DEFINE_LOOPS(uint8_t, 1)
DEFINE_LOOPS(uint16_t, 2)
DEFINE_LOOPS(uint32_t, 4)
DEFINE_LOOPS(uint64_t, 8)

/* Codec 7's loops for each width W > 1: an element rotated left by one bit (the sign to
   bit 0, a float's exponent whole in the top byte), its top byte (the key) to the last
   plane in element order, its other bytes to the other planes in grouped order.

   Wider elements pass through ``scratch`` (n rotated elements in grouped order): one
   scatter of whole elements and one plain pass over the planes cost less than
   scattering each byte to its plane (fp32: split 1.15x, assemble 1.4x); a
   2-byte element has one byte to place, which goes straight to its plane. */
#define DEFINE_EXPONENT_LOOPS(T, W)                                                        \
    static inline T rotated_##W(const uint8_t *raws, Py_ssize_t i)                         \
    {                                                                                      \
        T code;                                                                            \
        memcpy(&code, raws + i * W, W);                                                    \
        return (T)((T)(code << 1) | (T)(code >> (8 * W - 1)));                             \
    }                                                                                      \
    /* Each element's key to ``keys``, and how many elements have each key. */             \
    static void exponent_keys_##W(const uint8_t *restrict raws, uint8_t *restrict keys,     \
                                  Py_ssize_t n, Py_ssize_t *counts)                        \
    {                                                                                      \
        Py_ssize_t tables[4][EXPONENT_KEYS] = {{0}}; /* four: see COUNT */                 \
        Py_ssize_t i = 0;                                                                  \
        for (; i + 3 < n; i += 4)                                                          \
            for (int k = 0; k < 4; k++)                                                    \
                tables[k][keys[i + k] = (uint8_t)(rotated_##W(raws, i + k) >> (8 * W - 8))]++; \
        for (; i < n; i++)                                                                 \
            tables[0][keys[i] = (uint8_t)(rotated_##W(raws, i) >> (8 * W - 8))]++;         \
        for (int key = 0; key < EXPONENT_KEYS; key++)                                      \
            counts[key] = tables[0][key] + tables[1][key] + tables[2][key] + tables[3][key]; \
    }                                                                                      \
    static int split_exponents_##W(const uint8_t *restrict raws, uint8_t *restrict scratch, \
                                   uint8_t *restrict planes, Py_ssize_t n, Layout *layout) \
    {                                                                                      \
        const uint8_t *keys = planes + (Py_ssize_t)(W - 1) * n;                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            uint8_t g = layout->group_of_key[keys[i]];                                     \
            Py_ssize_t j = layout->cursor[g]++;                                            \
            if (j >= layout->end[g])                                                       \
                return -1;                                                                 \
            T turned = rotated_##W(raws, i);                                               \
            if (W == 2) /* one byte to place: straight to its plane */                     \
                planes[j] = (uint8_t)turned;                                               \
            else                                                                           \
                memcpy(scratch + j * W, &turned, W);                                       \
        }                                                                                  \
        for (Py_ssize_t j = 0; W > 2 && j < n; j++) {                                      \
            T turned;                                                                      \
            memcpy(&turned, scratch + j * W, W);                                           \
            for (int lane = 0; lane < W - 1; lane++)                                       \
                planes[(Py_ssize_t)lane * n + j] = (uint8_t)(turned >> (8 * lane));        \
        }                                                                                  \
        return 0;                                                                          \
    }                                                                                      \
    static int assemble_exponents_##W(const uint8_t *restrict planes, uint8_t *restrict scratch, \
                                      uint8_t *restrict outs, Py_ssize_t n, Layout *layout) \
    {                                                                                      \
        const uint8_t *keys = planes + (Py_ssize_t)(W - 1) * n;                            \
        for (Py_ssize_t j = 0; W > 2 && j < n; j++) {                                      \
            T turned = 0;                                                                  \
            for (int lane = 0; lane < W - 1; lane++)                                       \
                turned |= (T)((T)planes[(Py_ssize_t)lane * n + j] << (8 * lane));          \
            memcpy(scratch + j * W, &turned, W);                                           \
        }                                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            uint8_t key = keys[i], g = layout->group_of_key[key];                          \
            Py_ssize_t j = layout->cursor[g]++;                                            \
            if (j >= layout->end[g])                                                       \
                return -1;                                                                 \
            T turned = planes[j];                                                          \
            if (W > 2)                                                                     \
                memcpy(&turned, scratch + j * W, W);                                       \
            turned |= (T)((T)key << (8 * W - 8));                                          \
            T code = (T)((T)(turned >> 1) | (T)(turned << (8 * W - 1)));                   \
            memcpy(outs + i * W, &code, W);                                                \
        }                                                                                  \
        return 0;                                                                          \
    }

DEFINE_EXPONENT_LOOPS(uint16_t, 2)
DEFINE_EXPONENT_LOOPS(uint32_t, 4)
DEFINE_EXPONENT_LOOPS(uint64_t, 8)

typedef int (*Loop)(const uint8_t *, const uint8_t *, uint8_t *, Py_ssize_t, Layout *);

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

static const Loop assembles[9] = {NULL, assemble_1, assemble_2, NULL, assemble_4,
                                  NULL, NULL,       NULL,       assemble_8};
static const Loop splits[9] = {NULL, split_1, split_2, NULL, split_4, NULL, NULL, NULL, split_8};

static PyObject *assemble(PyObject *self, PyObject *args) { return run(args, 0, assembles); }

static PyObject *split(PyObject *self, PyObject *args) { return run(args, 1, splits); }

typedef void (*KeyLoop)(const uint8_t *, uint8_t *, Py_ssize_t, Py_ssize_t *);
typedef int (*ExponentLoop)(const uint8_t *, uint8_t *, uint8_t *, Py_ssize_t, Layout *);

static const KeyLoop exponent_key_loops[9] = {
    NULL, NULL, exponent_keys_2, NULL, exponent_keys_4, NULL, NULL, NULL, exponent_keys_8};
static const ExponentLoop exponent_splits[9] = {
    NULL, NULL, split_exponents_2, NULL, split_exponents_4, NULL, NULL, NULL, split_exponents_8};
static const ExponentLoop exponent_assembles[9] = {
    NULL, NULL, assemble_exponents_2, NULL, assemble_exponents_4, NULL, NULL, NULL,
    assemble_exponents_8};

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
    ExponentLoop loop = width >= 2 && width <= 8 ? exponent_splits[width] : NULL;
    Py_ssize_t n = loop ? planes.len / width : 0;
    PyObject *result = NULL;
    Layout layout;
    int valid = table.len == EXPONENT_KEYS && groups >= 1 && groups <= MAX_GROUPS;
    for (int key = 0; valid && key < EXPONENT_KEYS; key++)
        valid = ((const uint8_t *)table.buf)[key] < groups;
    if (!loop)
        PyErr_SetString(PyExc_ValueError, "width must be 2, 4 or 8");
    else if (planes.len != n * width || raw.len < n * width || scratch.len < n * width)
        PyErr_SetString(PyExc_ValueError, "planes, elements and scratch do not fit");
    else if (!valid)
        PyErr_Format(PyExc_ValueError, "group_of_key must be %d bytes, each below groups (1 to %d)",
                     EXPONENT_KEYS, MAX_GROUPS);
    else {
        Py_ssize_t counts[EXPONENT_KEYS], sizes[MAX_GROUPS] = {0};
        int failed;
        memcpy(layout.group_of_key, table.buf, EXPONENT_KEYS);
        Py_BEGIN_ALLOW_THREADS
        exponent_key_loops[width](raw.buf, (uint8_t *)planes.buf + (width - 1) * n, n, counts);
        for (int key = 0; key < EXPONENT_KEYS; key++)
            sizes[layout.group_of_key[key]] += counts[key];
        for (Py_ssize_t g = 0, start = 0; g < groups; g++) {
            layout.cursor[g] = start;
            layout.end[g] = start += sizes[g];
        }
        failed = loop(raw.buf, scratch.buf, planes.buf, n, &layout);
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

static inline int exponent_of(const uint8_t *raws, int width, Py_ssize_t i)
{
    return (uint8_t)(raws[i * width + width - 1] << 1 | raws[i * width + width - 2] >> 7);
}

/* Counts KEY(data, width, i) of the elements 0, stride, 2 * stride... into four tables,
   summed later: a run of one key would otherwise make each count wait for the one
   before. */
#define COUNT(KEY, data, width, n, stride, counts)                                       \
    do {                                                                                 \
        Py_ssize_t i_ = 0;                                                               \
        for (; i_ + 3 * (stride) < (n); i_ += 4 * (stride)) {                            \
            (counts)[0][KEY(data, width, i_)]++;                                         \
            (counts)[1][KEY(data, width, i_ + (stride))]++;                              \
            (counts)[2][KEY(data, width, i_ + 2 * (stride))]++;                          \
            (counts)[3][KEY(data, width, i_ + 3 * (stride))]++;                          \
        }                                                                                \
        for (; i_ < (n); i_ += (stride))                                                 \
            (counts)[0][KEY(data, width, i_)]++;                                         \
    } while (0)

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
    Py_ssize_t counts[4][EXPONENT_KEYS] = {{0}};
    Py_ssize_t n = buf.len / width;
    const uint8_t *data = buf.buf;
    Py_BEGIN_ALLOW_THREADS
    if (exponents)
        COUNT(exponent_of, data, width, n, stride, counts);
    else
        COUNT(key_of, data, width, n, stride, counts);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    int keys = exponents ? EXPONENT_KEYS : CONTEXTS;
    PyObject *list = PyList_New(keys);
    if (!list)
        return NULL;
    for (int key = 0; key < keys; key++) {
        PyObject *count =
            PyLong_FromSsize_t(counts[0][key] + counts[1][key] + counts[2][key] + counts[3][key]);
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

/* gain_counts(raw, base, width, stride, group_of_key, groups, biases): what
   grouping_gain_bits (planes.py) needs of the elements 0, stride, 2 * stride...: the
   bit length (0 to CODE_LENGTHS - 1) of each one's zigzag code against the base
   element, plain and less its group's bias, counted as (joint: groups x CODE_LENGTHS
   counts of group and biased length, plain: CODE_LENGTHS counts of plain length,
   the sums of max(length - 1, 0) of both). */
#define CODE_LENGTHS 66 /* as many as numpy's frexp gives for a uint64 */

static inline int bit_length(uint64_t code) { return code ? 64 - __builtin_clzll(code) : 0; }

static inline uint64_t zigzag(uint64_t diff, int width)
{
    uint64_t mask = width == 8 ? ~(uint64_t)0 : ((uint64_t)1 << (8 * width)) - 1;
    diff &= mask;
    uint64_t negative = (diff >> (8 * width - 1)) & 1;
    return ((diff << 1) & mask) ^ (negative ? mask : 0);
}

/* The sampling loop of gain_counts for one width W (a compile-time constant). */
#define GAIN_LOOP(W)                                                                       \
    for (Py_ssize_t i = 0; i < n; i += stride) {                                           \
        uint64_t a = 0, b = 0;                                                             \
        memcpy(&a, ours + i * (W), (W)); /* little-endian: the low bytes */                \
        memcpy(&b, theirs + i * (W), (W));                                                 \
        uint8_t g = group_of_key[theirs[i * (W) + (W) - 1] & (CONTEXTS - 1)];              \
        int was = bit_length(zigzag(a - b, (W)));                                          \
        int now = bit_length(zigzag(a - b - bias[g], (W)));                                \
        plain[was]++;                                                                      \
        joint[g * CODE_LENGTHS + now]++;                                                   \
        below_plain += was > 1 ? was - 1 : 0;                                              \
        below_shifted += now > 1 ? now - 1 : 0;                                            \
    }

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
    Py_ssize_t *joint = NULL;
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
    else if (!(joint = PyMem_Calloc(groups * CODE_LENGTHS, sizeof(Py_ssize_t))))
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
            Py_ssize_t plain[CODE_LENGTHS] = {0}, below_plain = 0, below_shifted = 0;
            const uint8_t *ours = raw.buf, *theirs = base.buf;
            Py_BEGIN_ALLOW_THREADS
            switch (width) { /* a memcpy of a constant size is a load */
            case 1: GAIN_LOOP(1); break;
            case 2: GAIN_LOOP(2); break;
            case 4: GAIN_LOOP(4); break;
            default: GAIN_LOOP(8); break;
            }
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
    {"gain_counts", gain_counts, METH_VARARGS,
     "gain_counts(raw, base, width, stride, group_of_key, groups, biases): the counts "
     "grouping_gain_bits judges by."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_kernels", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
