/* A zstd frame whose blocks hold Huffman-coded literals only (no sequences): what
   codec 7 stores its key plane in (codecs.py). On such a plane, a float's exponents,
   zstd's fast match search finds short matches that cost more than the literals they
   replace: Huffman coding alone writes frames 3-8% smaller (0.4-1% of a whole block,
   bench: entropy), about twice as fast, which pays for the check that each frame
   decodes back. Any zstd decoder reads the frames: the stored format is unchanged.

   huffman_frame(data) -> bytes, or None where Huffman coding alone does not suit the
   data (then the caller uses zstd): fewer than MIN_HUFFMAN_BLOCK bytes, fewer than
   two values in a block, neighbours alike more often than chance says (runs and
   patterns, where zstd's matches pay), or no smaller than the data. The weights of
   the code are written in zstd's direct form where the values are at most 128, else
   compressed with FSE (a float's exponent of 129 and up: values of 4 and more).
   Format: RFC 8878, sections "Literals Section", "Huffman Tree Description" and "FSE
   Table Description". */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ZSTD_BLOCK 131072      /* the largest block a frame holds */
#define MIN_HUFFMAN_BLOCK 1024 /* a shorter last block is stored raw */
#define MAX_BITS 11            /* the longest code zstd allows */
#define DIRECT_SYMBOLS 129     /* direct weights describe the symbols 0 to 128 */
#define WEIGHT_TABLE_LOG 6     /* the finest FSE table zstd reads Huffman weights with */
#define MAX_TREE_BYTES 128     /* a tree description's header byte holds FSE sizes < 128 */
/* How much more often than two independent draws neighbouring bytes may be alike
   before a block is left to zstd, whose matches then pay: 1.4-2.6 on the optimizer
   states where zstd's frames were 0.7x Huffman's, at most 1.07 elsewhere (bench:
   entropy). */
#define MAX_REPEAT_EXCESS 1.2

typedef struct {
    uint32_t count;
    int symbol;
} Leaf;

static int by_count(const void *a, const void *b)
{
    const Leaf *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? -1 : 1;
    return x->symbol - y->symbol;
}

/* Huffman code lengths, at most MAX_BITS, of the symbols 0..symbols-1 by their counts;
   returns the longest, 0 when fewer than two symbols occur. */
static int code_lengths(const uint32_t *counts, int symbols, uint8_t lengths[256])
{
    Leaf leaves[256];
    int n = 0;
    memset(lengths, 0, 256);
    for (int s = 0; s < symbols; s++)
        if (counts[s]) {
            leaves[n].count = counts[s];
            leaves[n].symbol = s;
            n++;
        }
    if (n < 2)
        return 0;
    qsort(leaves, n, sizeof(Leaf), by_count);
    /* Two queues: the leaves by count, and the nodes made, which come out in order. */
    uint64_t weight[512];
    int parent[512], depth[512];
    for (int i = 0; i < n; i++)
        weight[i] = leaves[i].count;
    int next_leaf = 0, next_node = n, made = n;
    for (int k = 0; k < n - 1; k++) {
        int pick[2];
        for (int j = 0; j < 2; j++) {
            if (next_leaf < n && (next_node >= made || weight[next_leaf] <= weight[next_node]))
                pick[j] = next_leaf++;
            else
                pick[j] = next_node++;
        }
        weight[made] = weight[pick[0]] + weight[pick[1]];
        parent[pick[0]] = parent[pick[1]] = made;
        made++;
    }
    depth[made - 1] = 0;
    for (int i = made - 2; i >= 0; i--)
        depth[i] = depth[parent[i]] + 1;
    /* Clamp to MAX_BITS, then make the code complete again: each round drops a code of
       the longest length and splits a shorter one into two one bit longer, which
       takes one unit (of the longest length) off the Kraft sum. */
    int per_length[MAX_BITS + 2] = {0}, longest = 0;
    for (int i = 0; i < n; i++) {
        int d = depth[i] > MAX_BITS ? MAX_BITS : depth[i];
        per_length[d]++;
        if (d > longest)
            longest = d;
    }
    uint64_t kraft = 0;
    for (int l = 1; l <= longest; l++)
        kraft += (uint64_t)per_length[l] << (longest - l);
    while (kraft > ((uint64_t)1 << longest)) {
        per_length[longest]--;
        for (int l = longest - 1; l > 0; l--)
            if (per_length[l]) {
                per_length[l]--;
                per_length[l + 1] += 2;
                break;
            }
        kraft--;
    }
    int i = 0; /* the rarest symbols take the longest codes */
    for (int l = longest; l > 0; l--)
        for (int c = 0; c < per_length[l]; c++)
            lengths[leaves[i++].symbol] = (uint8_t)l;
    return longest;
}

/* A backward bitstream as zstd writes FSE states (RFC 8878, "FSE"): bits appended low
   first, flushed a byte at a time, closed by a 1 bit. */
typedef struct {
    uint64_t acc;
    unsigned bits;
    uint8_t *p, *end;
} BitWriter;

static void add_bits(BitWriter *w, uint64_t value, unsigned count)
{
    if (w->p >= w->end)
        return; /* out of room: close_bits says so */
    w->acc |= (value & (((uint64_t)1 << count) - 1)) << w->bits;
    w->bits += count;
    while (w->bits >= 8 && w->p < w->end) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->bits -= 8;
    }
}

static size_t close_bits(BitWriter *w, uint8_t *start)
{
    add_bits(w, 1, 1);
    if (w->bits && w->p < w->end)
        *w->p++ = (uint8_t)w->acc;
    return w->p < w->end ? (size_t)(w->p - start) : 0; /* 0: out of room */
}

/* The FSE description of the weights (``weights`` of them, each 0 to MAX_BITS) at out,
   room ``room`` bytes: the table's accuracy and normalized counts, then the weights
   coded by two interleaved states (the even ones by the first). Returns its length,
   or 0 if it does not fit or the weights take one value. */
static size_t fse_weights(const uint8_t *weight, int weights, uint8_t *out, size_t room)
{
    enum { SYMBOLS = MAX_BITS + 1, TABLE = 1 << WEIGHT_TABLE_LOG };
    int count[SYMBOLS] = {0}, norm[SYMBOLS] = {0}, present = 0;
    for (int i = 0; i < weights; i++)
        count[weight[i]]++;
    int top = 0, spread = TABLE;
    for (int s = 0; s < SYMBOLS; s++) {
        if (!count[s])
            continue;
        top = s;
        present++;
        /* each value present takes a share of the table by its count, at least one */
        norm[s] = (int)((uint64_t)count[s] * TABLE / (uint64_t)weights);
        if (norm[s] < 1)
            norm[s] = 1;
        spread -= norm[s];
    }
    if (present < 2)
        return 0;
    /* what the rounding left or took goes to (or comes from) the commonest values */
    while (spread != 0) {
        int best = -1;
        for (int s = 0; s < SYMBOLS; s++)
            if (norm[s] && (spread > 0 || norm[s] > 1) && (best < 0 || count[s] > count[best]))
                best = s;
        if (best < 0)
            return 0;
        int step = spread; /* all of it, unless that would take the value below one */
        if (spread < 0 && norm[best] - 1 < -spread)
            step = 1 - norm[best];
        norm[best] += step;
        spread -= step;
    }

    /* the table description: accuracy less 5, then each count + 1 in as few bits as the
       probability still to describe allows, with 2-bit repeat flags after a zero */
    BitWriter w = {0, 0, out, out + room};
    add_bits(&w, WEIGHT_TABLE_LOG - 5, 4);
    int remaining = TABLE + 1, threshold = TABLE, nbits = WEIGHT_TABLE_LOG + 1, s = 0;
    int previous_zero = 0;
    while (remaining > 1) {
        if (previous_zero) {
            int start = s;
            while (!norm[s])
                s++;
            while (s >= start + 3) {
                start += 3;
                add_bits(&w, 3, 2);
            }
            add_bits(&w, (uint64_t)(s - start), 2);
        }
        int value = norm[s++];
        int max = (2 * threshold - 1) - remaining;
        remaining -= value;
        value++;
        if (value >= threshold)
            value += max;
        add_bits(&w, (uint64_t)value, (unsigned)(value < max ? nbits - 1 : nbits));
        previous_zero = value == 1;
        while (remaining < threshold) {
            nbits--;
            threshold >>= 1;
        }
    }
    if (w.bits) /* the description ends on a byte boundary */
        add_bits(&w, 0, 8 - w.bits);
    if (w.p >= w.end)
        return 0;

    /* the coding table: each value's states spread over the table as zstd spreads them */
    uint8_t symbol_at[TABLE];
    unsigned position = 0, step = (TABLE >> 1) + (TABLE >> 3) + 3;
    for (int v = 0; v <= top; v++)
        for (int k = 0; k < norm[v]; k++) {
            symbol_at[position] = (uint8_t)v;
            position = (position + step) & (TABLE - 1);
        }
    uint16_t next_state[TABLE];
    int cumul[SYMBOLS + 1];
    cumul[0] = 0;
    for (int v = 0; v < SYMBOLS; v++)
        cumul[v + 1] = cumul[v] + norm[v];
    for (int u = 0; u < TABLE; u++)
        next_state[cumul[symbol_at[u]]++] = (uint16_t)(TABLE + u);
    int32_t delta_bits[SYMBOLS] = {0}, delta_state[SYMBOLS] = {0};
    for (int v = 0, total = 0; v <= top; v++) {
        if (!norm[v])
            continue;
        int high = 31 - __builtin_clz((unsigned)(norm[v] == 1 ? 1 : norm[v] - 1));
        int max_bits_out = norm[v] == 1 ? WEIGHT_TABLE_LOG : WEIGHT_TABLE_LOG - high;
        delta_bits[v] = (int32_t)((max_bits_out << 16) - (norm[v] << max_bits_out));
        delta_state[v] = total - norm[v];
        total += norm[v];
    }

    /* the weights, last first; the even ones by the first state, the odd by the second */
    uint8_t *stream = w.p;
    BitWriter b = {0, 0, stream, out + room};
    uint32_t state[2];
    for (int i = weights - 1; i >= 0; i--) {
        int which = i & 1, v = weight[i];
        if (i >= weights - 2) { /* the last two start the states */
            uint32_t bits_out = (uint32_t)((delta_bits[v] + (1 << 15)) >> 16);
            uint32_t value = (bits_out << 16) - (uint32_t)delta_bits[v];
            state[which] = next_state[(value >> bits_out) + delta_state[v]];
            continue;
        }
        uint32_t bits_out = (uint32_t)((state[which] + (uint32_t)delta_bits[v]) >> 16);
        add_bits(&b, state[which], bits_out);
        state[which] = next_state[(state[which] >> bits_out) + delta_state[v]];
    }
    add_bits(&b, state[1], WEIGHT_TABLE_LOG);
    add_bits(&b, state[0], WEIGHT_TABLE_LOG);
    size_t coded = close_bits(&b, stream);
    if (!coded)
        return 0;
    return (size_t)(stream - out) + coded;
}

/* The Huffman tree description of the code ``lengths`` (symbols 0..top, the longest
   code ``longest`` bits) at out: a header byte, then the weights of symbols 0..top-1
   (top's is deduced), directly where top is at most 128, else FSE-coded. Returns its
   length, or 0 where FSE cannot describe them in under 128 bytes. */
static size_t write_tree(const uint8_t lengths[256], int top, int longest, uint8_t *out)
{
    uint8_t weight[256];
    for (int s = 0; s < top; s++)
        weight[s] = lengths[s] ? (uint8_t)(longest + 1 - lengths[s]) : 0;
    if (top < DIRECT_SYMBOLS) {
        out[0] = (uint8_t)(127 + top);
        for (int s = 0; s < top; s += 2)
            out[1 + s / 2] = (uint8_t)(weight[s] << 4 | (s + 1 < top ? weight[s + 1] : 0));
        return 1 + (size_t)(top + 1) / 2;
    }
    size_t size = fse_weights(weight, top, out + 1, MAX_TREE_BYTES);
    if (!size || size >= MAX_TREE_BYTES)
        return 0;
    out[0] = (uint8_t)size;
    return 1 + size;
}

/* Writes the four bitstreams of src[0..n) (three of `segment` symbols, the last the
   rest) at out + at[k], interleaved so that their chains of shifts overlap. A stream
   holds its symbols last to first, since it is read backward, and ends with a 1 bit;
   it needs 8 bytes of room past its end. table[s]: the code of s, its length << 16.
   Returns 0, or -1 if a stream's length is not the size[k] its header states. */
static int write_streams(const uint8_t *src, size_t n, size_t segment, const uint32_t table[256],
                         uint8_t *out, const size_t at[4], const size_t size[4])
{
    uint64_t acc[4] = {0};
    unsigned bits[4] = {0};
    uint8_t *p[4];
    size_t left[4];
    for (int k = 0; k < 4; k++) {
        p[k] = out + at[k];
        left[k] = k == 3 ? n - 3 * segment : segment;
    }
#define PUT(k, s)                                                                          \
    do {                                                                                   \
        uint32_t entry_ = table[s];                                                        \
        acc[k] |= (uint64_t)(entry_ & 0xFFFF) << bits[k];                                  \
        bits[k] += entry_ >> 16;                                                           \
    } while (0)
#define FLUSH(k) /* the whole bytes out (8 written, the rest rewritten later) */            \
    do {                                                                                   \
        memcpy(p[k], &acc[k], 8);                                                          \
        p[k] += bits[k] >> 3;                                                              \
        acc[k] >>= bits[k] & ~7u;                                                          \
        bits[k] &= 7;                                                                      \
    } while (0)
#define PUT_FOUR(k) /* four codes: 44 bits at most, with 7 left from before */              \
    do {                                                                                   \
        const uint8_t *s_ = src + segment * (k) + left[k] - 4;                             \
        PUT(k, s_[3]);                                                                     \
        PUT(k, s_[2]);                                                                     \
        PUT(k, s_[1]);                                                                     \
        PUT(k, s_[0]);                                                                     \
        left[k] -= 4;                                                                      \
        FLUSH(k);                                                                          \
    } while (0)
    while (left[3] >= 4) /* the last stream is the shortest: the four go together */
        for (int k = 0; k < 4; k++)
            PUT_FOUR(k);
    int failed = 0;
    for (int k = 0; k < 4; k++) {
        while (left[k] >= 4)
            PUT_FOUR(k);
        while (left[k]) {
            left[k]--;
            PUT(k, src[segment * k + left[k]]);
            FLUSH(k);
        }
        acc[k] |= (uint64_t)1 << bits[k];
        bits[k] += 1;
        FLUSH(k);
        if (bits[k])
            *p[k]++ = (uint8_t)acc[k];
        failed |= (size_t)(p[k] - (out + at[k])) != size[k];
    }
#undef PUT_FOUR
#undef FLUSH
#undef PUT
    return failed ? -1 : 0;
}

static void put_le(uint8_t *out, uint64_t value, int bytes)
{
    for (int b = 0; b < bytes; b++)
        out[b] = (uint8_t)(value >> (8 * b));
}

/* One compressed block of src[0..n) (MIN_HUFFMAN_BLOCK <= n <= ZSTD_BLOCK), header
   included, at out (room: n + BLOCK_OVERHEAD); returns its length, or 0 when Huffman
   coding alone does not suit it (see the top of this file). */
#define BLOCK_OVERHEAD (3 + 5 + 1 + MAX_TREE_BYTES + 6 + 4 * 8 + 1)
static size_t huffman_block(const uint8_t *src, size_t n, int last, uint8_t *out)
{
    size_t segment = (n + 3) / 4, last_len = n - 3 * segment;
    /* each stream's counts: four tables, so that a run of one symbol does not chain
       the increments */
    uint32_t lanes[4][256] = {{0}}, counts[256];
    for (size_t i = 0; i < segment; i++) {
        lanes[0][src[i]]++;
        lanes[1][src[segment + i]]++;
        lanes[2][src[2 * segment + i]]++;
        if (i < last_len)
            lanes[3][src[3 * segment + i]]++;
    }
    size_t repeats = 0;
    for (size_t i = 1; i < n; i++)
        repeats += src[i] == src[i - 1];
    double alike = 0; /* the chance that two independent draws are alike */
    for (int s = 0; s < 256; s++) {
        counts[s] = lanes[0][s] + lanes[1][s] + lanes[2][s] + lanes[3][s];
        alike += ((double)counts[s] / n) * ((double)counts[s] / n);
    }
    if (repeats > MAX_REPEAT_EXCESS * alike * (n - 1))
        return 0;
    int top = 255;
    while (top > 0 && !counts[top])
        top--;
    uint8_t lengths[256];
    int longest = code_lengths(counts, top + 1, lengths);
    if (!longest)
        return 0;
    /* canonical codes, as a decoder rebuilds them from the weights: the longest
       lengths first, symbols in order within a length */
    uint32_t table[256] = {0}, code = 0;
    for (int l = longest; l > 0; l--) {
        for (int s = 0; s <= top; s++)
            if (lengths[s] == l)
                table[s] = code++ | (uint32_t)l << 16;
        code >>= 1;
    }
    uint8_t tree[1 + MAX_TREE_BYTES];
    size_t size[4], tree_size = write_tree(lengths, top, longest, tree);
    if (!tree_size)
        return 0;
    for (int k = 0; k < 4; k++) {
        uint64_t total = 1; /* the end mark */
        for (int s = 0; s <= top; s++)
            total += (uint64_t)lanes[k][s] * lengths[s];
        size[k] = (size_t)(total + 7) / 8;
    }
    size_t literals = tree_size + 6 + size[0] + size[1] + size[2] + size[3];
    if (5 + literals + 1 >= n)
        return 0; /* no smaller than the block */
    uint8_t *p = out + 3 + 5; /* past the block header and the literals header */
    memcpy(p, tree, tree_size);
    p += tree_size;
    for (int k = 0; k < 3; k++, p += 2) /* the jump table: the first three streams' sizes */
        put_le(p, size[k], 2);
    /* each stream written with 8 bytes of room after it, then moved up to the one
       before */
    size_t at[4], room = (size_t)(p - out);
    for (int k = 0; k < 4; k++) {
        at[k] = room;
        room += size[k] + 8;
    }
    if (write_streams(src, n, segment, table, out, at, size) < 0)
        return 0;
    for (int k = 0; k < 4; k++) {
        memmove(p, out + at[k], size[k]);
        p += size[k];
    }
    /* a compressed literals block, four streams, both sizes in 18 bits */
    put_le(out + 3, 2 | 3 << 2 | (uint64_t)n << 4 | (uint64_t)literals << 22, 5);
    *p++ = 0; /* no sequences */
    size_t content = (size_t)(p - out) - 3;
    put_le(out, (uint64_t)last | 2 << 1 | (uint64_t)content << 3, 3); /* a compressed block */
    return (size_t)(p - out);
}

/* Room for the frame of n bytes (while it is being written). */
static size_t frame_bound(size_t n) { return 4 + 5 + (n / ZSTD_BLOCK + 1) * BLOCK_OVERHEAD + n; }

/* The frame of src[0..n) at out (room: frame_bound(n)); returns its length, or 0 when
   Huffman coding alone does not suit a block. */
static size_t huffman_frame_into(const uint8_t *src, size_t n, uint8_t *out)
{
    if (n < MIN_HUFFMAN_BLOCK || n > UINT32_MAX)
        return 0;
    uint8_t *p = out;
    put_le(p, 0xFD2FB528, 4); /* the magic number */
    p[4] = 0xA0;              /* single segment, 4-byte content size, no checksum */
    put_le(p + 5, n, 4);
    p += 9;
    for (size_t done = 0; done < n;) {
        size_t take = n - done > ZSTD_BLOCK ? ZSTD_BLOCK : n - done;
        int last = done + take == n;
        if (take < MIN_HUFFMAN_BLOCK) { /* a short last block, stored raw */
            put_le(p, (uint64_t)last | (uint64_t)take << 3, 3);
            memcpy(p + 3, src + done, take);
            p += 3 + take;
        } else {
            size_t got = huffman_block(src + done, take, last, p);
            if (!got)
                return 0;
            p += got;
        }
        done += take;
    }
    return (size_t)(p - out) < n ? (size_t)(p - out) : 0; /* no smaller: not worth it */
}

static PyObject *huffman_frame(PyObject *self, PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)frame_bound(data.len));
    if (!frame) {
        PyBuffer_Release(&data);
        return NULL;
    }
    size_t length;
    Py_BEGIN_ALLOW_THREADS
    length = huffman_frame_into(data.buf, data.len, (uint8_t *)PyBytes_AS_STRING(frame));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (!length) {
        Py_DECREF(frame);
        Py_RETURN_NONE;
    }
    if (_PyBytes_Resize(&frame, (Py_ssize_t)length) < 0)
        return NULL;
    return frame;
}

static PyMethodDef methods[] = {
    {"huffman_frame", huffman_frame, METH_VARARGS,
     "huffman_frame(data): a zstd frame of Huffman-coded literals only, or None where that "
     "does not suit the data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_huffman", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__huffman(void) { return PyModule_Create(&module); }
