/* The loops declared in loops.h: plain C over buffers whose sizes _kernels.c has
   checked. */
#include "loops.h"

#include <string.h>

static inline int key_of(const uint8_t *bases, int width, ptrdiff_t i)
{
    return bases[i * width + width - 1] & (CONTEXTS - 1);
}

/* Where element i goes in the grouped order, its group in *group; -1 when its group
   already holds as many elements as its size. */
static inline ptrdiff_t place(Layout *layout, const uint8_t *bases, int width, ptrdiff_t i,
                               uint8_t *group)
{
    uint8_t g = *group = layout->group_of_key[key_of(bases, width, i)];
    ptrdiff_t j = layout->cursor[g]++;
    return j < layout->end[g] ? j : -1;
}

/* Grouped assembly in vectors where the CPU has AVX-512 (with VBMI2's 16-bit expand):
   the scalar loop places one element at a time; here 64 bytes of elements at once,
   each group in turn taking its next elements of the grouped codes into the lanes
   whose key falls in it (an expanding load). The groups of codecs 5 and 6 are ranges
   of keys in ascending order, so a lane's group is the first whose upper key bound
   is above the lane's key; a layout of any other shape takes the scalar loop. Either
   loop writes the same bytes. */
int vector_loops = 1;

/* GCC 8 and clang 8 were the first to know VBMI2; older ones build the scalar loops. */
#if defined(__x86_64__) && \
    (defined(__clang__) ? __clang_major__ >= 8 : defined(__GNUC__) && __GNUC__ >= 8)
#include <immintrin.h>
#define HAVE_VECTOR_LOOPS 1
#define VECTOR_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt")))

static int vector_cpu(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("popcnt");
    }
    return known;
}

/* Every group takes a compare and an expanding load per vector, whether or not any lane
   falls in it (branching on that mispredicts, as the groups of neighbouring elements
   vary): past half a vector's lanes of groups, the scalar loop is faster. */
#define VECTOR_MAX_GROUPS(width) (32 / (width))

/* The upper key bound of each group to ``high`` and the group count, or 0 when the
   groups are not ranges of keys in ascending order. */
static int key_ranges(const uint8_t group_of_key[CONTEXTS], int high[CONTEXTS])
{
    int groups = group_of_key[0] + 1;
    if (groups != 1)
        return 0;
    for (int key = 1; key < CONTEXTS; key++) {
        int g = group_of_key[key];
        if (g == groups)
            high[groups++ - 1] = key;
        else if (g != groups - 1)
            return 0;
    }
    high[groups - 1] = CONTEXTS;
    return groups;
}

/* Elements [0, *done) of assemble_W's grouped loop, for W 2 and 4; the caller's scalar
   loop does the rest with the cursors as left. -1 as there. */
#define DEFINE_VECTOR_LOOP(W, LANES, MASK, BITS, CAST)                                     \
    VECTOR_TARGET static int assemble_vector_##W(const uint8_t *restrict codes,            \
                                                 const uint8_t *restrict bases,            \
                                                 uint8_t *restrict outs, ptrdiff_t n,      \
                                                 Layout *layout, const int *high,          \
                                                 int groups, ptrdiff_t *done)              \
    {                                                                                      \
        const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi##BITS(1);       \
        const __m512i key_bits = _mm512_set1_epi##BITS(CONTEXTS - 1);                      \
        ptrdiff_t i = 0;                                                                   \
        for (; i + LANES <= n; i += LANES) {                                               \
            __m512i base = _mm512_loadu_si512(bases + i * W);                              \
            __m512i key = _mm512_and_si512(_mm512_srli_epi##BITS(base, 8 * W - 8), key_bits); \
            __m512i code = zero, bias = zero;                                              \
            MASK left = (MASK)~(MASK)0;                                                    \
            for (int g = 0; g < groups; g++) {                                             \
                __m512i bound = _mm512_set1_epi##BITS(high[g]);                            \
                MASK in = _mm512_mask_cmplt_epu##BITS##_mask(left, key, bound);            \
                ptrdiff_t count = __builtin_popcountll(in), j = layout->cursor[g];         \
                if (j + count > layout->end[g])                                            \
                    return -1;                                                             \
                code = _mm512_mask_expandloadu_epi##BITS(code, in, codes + j * W);         \
                __m512i drift = _mm512_set1_epi##BITS((CAST)layout->bias[g]);              \
                bias = _mm512_mask_mov_epi##BITS(bias, in, drift);                         \
                layout->cursor[g] = j + count;                                             \
                left &= (MASK)~in;                                                         \
            }                                                                              \
            __m512i sign = _mm512_sub_epi##BITS(zero, _mm512_and_si512(code, one));        \
            __m512i value = _mm512_xor_si512(_mm512_srli_epi##BITS(code, 1), sign);        \
            value = _mm512_add_epi##BITS(_mm512_add_epi##BITS(value, base), bias);         \
            _mm512_storeu_si512(outs + i * W, value);                                      \
        }                                                                                  \
        *done = i;                                                                         \
        return 0;                                                                          \
    }

DEFINE_VECTOR_LOOP(2, 32, __mmask32, 16, short)
DEFINE_VECTOR_LOOP(4, 16, __mmask16, 32, int)

/* How many of the elements [0, returned) have a key below each group's upper bound
   (the last group's, every key, is not counted), added to ``below``; for W 2 and 4. */
#define DEFINE_VECTOR_COUNT(W, LANES, BITS)                                                \
    VECTOR_TARGET static ptrdiff_t count_below_##W(const uint8_t *restrict bases,          \
                                                   ptrdiff_t n, const int *high,           \
                                                   int groups, ptrdiff_t *below)           \
    {                                                                                      \
        const __m512i key_bits = _mm512_set1_epi##BITS(CONTEXTS - 1);                      \
        ptrdiff_t i = 0;                                                                   \
        for (; i + LANES <= n; i += LANES) {                                               \
            __m512i base = _mm512_loadu_si512(bases + i * W);                              \
            __m512i key = _mm512_and_si512(_mm512_srli_epi##BITS(base, 8 * W - 8), key_bits); \
            for (int g = 0; g + 1 < groups; g++)                                           \
                below[g] += __builtin_popcountll(                                          \
                    _mm512_cmplt_epu##BITS##_mask(key, _mm512_set1_epi##BITS(high[g])));   \
        }                                                                                  \
        return i;                                                                          \
    }

DEFINE_VECTOR_COUNT(2, 32, 16)
DEFINE_VECTOR_COUNT(4, 16, 32)
#else
#define HAVE_VECTOR_LOOPS 0
#endif

/* assemble_W's grouped elements [0, *done) in vectors where they can be (W 2 and 4);
   *done 0 where not. -1 as there. */
static int assemble_vector(int width, const uint8_t *codes, const uint8_t *bases,
                           uint8_t *outs, ptrdiff_t n, Layout *layout, ptrdiff_t *done)
{
    *done = 0;
#if HAVE_VECTOR_LOOPS
    int high[CONTEXTS], groups;
    if (!vector_loops || (width != 2 && width != 4) || !vector_cpu() ||
        !(groups = key_ranges(layout->group_of_key, high)) || groups > VECTOR_MAX_GROUPS(width))
        return 0;
    if (width == 2)
        return assemble_vector_2(codes, bases, outs, n, layout, high, groups, done);
    return assemble_vector_4(codes, bases, outs, n, layout, high, groups, done);
#else
    (void)width, (void)codes, (void)bases, (void)outs, (void)n, (void)layout;
    return 0;
#endif
}

/* For each width W: assemble_W (planes -> elements) and split_W (elements -> planes),
   element i taking place j of the planes (grouped, with a width above 1, through
   layout->scratch). Both return 0, or -1 when a group holds
   more elements than its size (then nothing was written past the group: the caller
   raises). The loops without groups are apart, so that the compiler vectorizes them. */
#define DEFINE_LOOPS(T, W)                                                                 \
    /* element i of raws -> its code: the zigzag of its difference from the base           \
       element less the bias, or the element itself without bases */                       \
    static inline T code_of_##W(const uint8_t *raws, const uint8_t *bases, ptrdiff_t i,    \
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
    static inline void put_code_##W(T code, const uint8_t *bases, uint8_t *outs, ptrdiff_t i, \
                                    T bias)                                                \
    {                                                                                      \
        if (bases) {                                                                       \
            T base;                                                                        \
            memcpy(&base, bases + i * W, W);                                               \
            code = (T)((T)((T)(code >> 1) ^ (T)(0 - (T)(code & 1))) + base + bias);        \
        }                                                                                  \
        memcpy(outs + i * W, &code, W);                                                    \
    }                                                                                      \
    static inline T gather_##W(const uint8_t *planes, ptrdiff_t n, ptrdiff_t j)            \
    {                                                                                      \
        T code = 0;                                                                        \
        for (int lane = 0; lane < W; lane++)                                               \
            code |= (T)planes[(ptrdiff_t)lane * n + j] << (8 * lane);                      \
        return code;                                                                       \
    }                                                                                      \
    static inline void scatter_##W(T code, uint8_t *planes, ptrdiff_t n, ptrdiff_t j)      \
    {                                                                                      \
        for (int lane = 0; lane < W; lane++)                                               \
            planes[(ptrdiff_t)lane * n + j] = (uint8_t)(code >> (8 * lane));               \
    }                                                                                      \
    /* Grouped, a wide element's W bytes would go to or come from W places far apart:      \
       its code goes to (comes from) scratch in grouped order instead, which one plain     \
       pass turns into (makes from) the planes (faster on wide elements:
       measured in commit 9e1b98f). */                                                     \
    static int assemble_##W(const uint8_t *restrict planes, const uint8_t *restrict bases, \
                            uint8_t *restrict outs, ptrdiff_t n, Layout *layout)           \
    {                                                                                      \
        if (!layout->grouped) {                                                            \
            if (bases)                                                                     \
                for (ptrdiff_t i = 0; i < n; i++)                                          \
                    put_code_##W(gather_##W(planes, n, i), bases, outs, i, 0);             \
            else                                                                           \
                for (ptrdiff_t i = 0; i < n; i++)                                          \
                    put_code_##W(gather_##W(planes, n, i), NULL, outs, i, 0);              \
            return 0;                                                                      \
        }                                                                                  \
        uint8_t *codes = layout->scratch;                                                  \
        for (ptrdiff_t j = 0; W > 1 && j < n; j++) {                                       \
            T code = gather_##W(planes, n, j);                                             \
            memcpy(codes + j * W, &code, W);                                               \
        }                                                                                  \
        ptrdiff_t i = 0;                                                                   \
        if (assemble_vector(W, codes, bases, outs, n, layout, &i))                         \
            return -1;                                                                     \
        for (; i < n; i++) {                                                               \
            uint8_t g;                                                                     \
            ptrdiff_t j = place(layout, bases, W, i, &g);                                  \
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
                         uint8_t *restrict planes, ptrdiff_t n, Layout *layout)            \
    {                                                                                      \
        if (!layout->grouped) {                                                            \
            if (bases)                                                                     \
                for (ptrdiff_t i = 0; i < n; i++)                                          \
                    scatter_##W(code_of_##W(raws, bases, i, 0), planes, n, i);             \
            else                                                                           \
                for (ptrdiff_t i = 0; i < n; i++)                                          \
                    scatter_##W(code_of_##W(raws, NULL, i, 0), planes, n, i);              \
            return 0;                                                                      \
        }                                                                                  \
        uint8_t *codes = layout->scratch;                                                  \
        for (ptrdiff_t i = 0; i < n; i++) {                                                \
            uint8_t g;                                                                     \
            ptrdiff_t j = place(layout, bases, W, i, &g);                                  \
            if (j < 0)                                                                     \
                return -1;                                                                 \
            T code = code_of_##W(raws, bases, i, (T)layout->bias[g]);                      \
            if (W == 1)                                                                    \
                planes[j] = (uint8_t)code;                                                 \
            else                                                                           \
                memcpy(codes + j * W, &code, W);                                           \
        }                                                                                  \
        for (ptrdiff_t j = 0; W > 1 && j < n; j++) {                                       \
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
   scattering each byte to its plane (measured in commit 01bd103); a
   2-byte element has one byte to place, which goes straight to its plane. */
#define DEFINE_EXPONENT_LOOPS(T, W)                                                        \
    static inline T rotated_##W(const uint8_t *raws, ptrdiff_t i)                          \
    {                                                                                      \
        T code;                                                                            \
        memcpy(&code, raws + i * W, W);                                                    \
        return (T)((T)(code << 1) | (T)(code >> (8 * W - 1)));                             \
    }                                                                                      \
    /* Each element's key to ``keys``, and how many elements have each key. */             \
    static void exponent_keys_##W(const uint8_t *restrict raws, uint8_t *restrict keys,    \
                                  ptrdiff_t n, ptrdiff_t *counts)                          \
    {                                                                                      \
        ptrdiff_t tables[4][EXPONENT_KEYS] = {{0}}; /* four: see COUNT */                  \
        ptrdiff_t i = 0;                                                                   \
        for (; i + 3 < n; i += 4)                                                          \
            for (int k = 0; k < 4; k++)                                                    \
                tables[k][keys[i + k] = (uint8_t)(rotated_##W(raws, i + k) >> (8 * W - 8))]++; \
        for (; i < n; i++)                                                                 \
            tables[0][keys[i] = (uint8_t)(rotated_##W(raws, i) >> (8 * W - 8))]++;         \
        for (int key = 0; key < EXPONENT_KEYS; key++)                                      \
            counts[key] = tables[0][key] + tables[1][key] + tables[2][key] + tables[3][key]; \
    }                                                                                      \
    static int split_exponents_##W(const uint8_t *restrict raws, uint8_t *restrict scratch, \
                                   uint8_t *restrict planes, ptrdiff_t n, Layout *layout)  \
    {                                                                                      \
        const uint8_t *keys = planes + (ptrdiff_t)(W - 1) * n;                             \
        for (ptrdiff_t i = 0; i < n; i++) {                                                \
            uint8_t g = layout->group_of_key[keys[i]];                                     \
            ptrdiff_t j = layout->cursor[g]++;                                             \
            if (j >= layout->end[g])                                                       \
                return -1;                                                                 \
            T turned = rotated_##W(raws, i);                                               \
            if (W == 2) /* one byte to place: straight to its plane */                     \
                planes[j] = (uint8_t)turned;                                               \
            else                                                                           \
                memcpy(scratch + j * W, &turned, W);                                       \
        }                                                                                  \
        for (ptrdiff_t j = 0; W > 2 && j < n; j++) {                                       \
            T turned;                                                                      \
            memcpy(&turned, scratch + j * W, W);                                           \
            for (int lane = 0; lane < W - 1; lane++)                                       \
                planes[(ptrdiff_t)lane * n + j] = (uint8_t)(turned >> (8 * lane));         \
        }                                                                                  \
        return 0;                                                                          \
    }                                                                                      \
    static int assemble_exponents_##W(const uint8_t *restrict planes, uint8_t *restrict scratch, \
                                      uint8_t *restrict outs, ptrdiff_t n, Layout *layout) \
    {                                                                                      \
        const uint8_t *keys = planes + (ptrdiff_t)(W - 1) * n;                             \
        for (ptrdiff_t j = 0; W > 2 && j < n; j++) {                                       \
            T turned = 0;                                                                  \
            for (int lane = 0; lane < W - 1; lane++)                                       \
                turned |= (T)((T)planes[(ptrdiff_t)lane * n + j] << (8 * lane));           \
            memcpy(scratch + j * W, &turned, W);                                           \
        }                                                                                  \
        for (ptrdiff_t i = 0; i < n; i++) {                                                \
            uint8_t key = keys[i], g = layout->group_of_key[key];                          \
            ptrdiff_t j = layout->cursor[g]++;                                             \
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
static inline int exponent_of(const uint8_t *raws, int width, ptrdiff_t i)
{
    return (uint8_t)(raws[i * width + width - 1] << 1 | raws[i * width + width - 2] >> 7);
}

/* Counts KEY(data, width, i) of the elements 0, stride, 2 * stride... into four tables,
   summed later: a run of one key would otherwise make each count wait for the one
   before. */
#define COUNT(KEY, data, width, n, stride, counts)                                         \
    do {                                                                                   \
        ptrdiff_t i_ = 0;                                                                  \
        for (; i_ + 3 * (stride) < (n); i_ += 4 * (stride)) {                              \
            (counts)[0][KEY(data, width, i_)]++;                                           \
            (counts)[1][KEY(data, width, i_ + (stride))]++;                                \
            (counts)[2][KEY(data, width, i_ + 2 * (stride))]++;                            \
            (counts)[3][KEY(data, width, i_ + 3 * (stride))]++;                            \
        }                                                                                  \
        for (; i_ < (n); i_ += (stride))                                                   \
            (counts)[0][KEY(data, width, i_)]++;                                           \
    } while (0)

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
    for (ptrdiff_t i = 0; i < n; i += stride) {                                            \
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

const Loop plane_assembles[9] = {NULL, assemble_1, assemble_2, NULL, assemble_4,
                                 NULL, NULL,       NULL,       assemble_8};
const Loop plane_splits[9] = {NULL, split_1, split_2, NULL, split_4, NULL, NULL, NULL, split_8};

typedef void (*KeyLoop)(const uint8_t *, uint8_t *, ptrdiff_t, ptrdiff_t *);

static const KeyLoop exponent_key_loops[9] = {
    NULL, NULL, exponent_keys_2, NULL, exponent_keys_4, NULL, NULL, NULL, exponent_keys_8};
static const ExponentLoop exponent_splits[9] = {
    NULL, NULL, split_exponents_2, NULL, split_exponents_4, NULL, NULL, NULL, split_exponents_8};
const ExponentLoop exponent_assembles[9] = {
    NULL, NULL, assemble_exponents_2, NULL, assemble_exponents_4, NULL, NULL, NULL,
    assemble_exponents_8};

/* The keys are counted as the key plane is written, so the group sizes need no
   second pass over the elements. */
int split_exponents_loop(const uint8_t *raws, int width, ptrdiff_t n, ptrdiff_t groups,
                         Layout *layout, uint8_t *scratch, uint8_t *planes, ptrdiff_t *sizes)
{
    ptrdiff_t counts[EXPONENT_KEYS];
    exponent_key_loops[width](raws, planes + (ptrdiff_t)(width - 1) * n, n, counts);
    for (ptrdiff_t g = 0; g < groups; g++)
        sizes[g] = 0;
    for (int key = 0; key < EXPONENT_KEYS; key++)
        sizes[layout->group_of_key[key]] += counts[key];
    for (ptrdiff_t g = 0, start = 0; g < groups; g++) {
        layout->cursor[g] = start;
        layout->end[g] = start += sizes[g];
    }
    return exponent_splits[width](raws, scratch, planes, n, layout);
}

void count_keys_loop(const uint8_t *data, int width, ptrdiff_t n, ptrdiff_t stride,
                     int exponents, ptrdiff_t counts[EXPONENT_KEYS])
{
    ptrdiff_t tables[4][EXPONENT_KEYS] = {{0}};
    if (exponents)
        COUNT(exponent_of, data, width, n, stride, tables);
    else
        COUNT(key_of, data, width, n, stride, tables);
    for (int key = 0; key < EXPONENT_KEYS; key++)
        counts[key] = tables[0][key] + tables[1][key] + tables[2][key] + tables[3][key];
}

void gain_counts_loop(const uint8_t *ours, const uint8_t *theirs, int width, ptrdiff_t n,
                      ptrdiff_t stride, const uint8_t group_of_key[CONTEXTS],
                      const uint64_t bias[CONTEXTS], ptrdiff_t *joint,
                      ptrdiff_t plain[CODE_LENGTHS], ptrdiff_t *below_plain_sum,
                      ptrdiff_t *below_shifted_sum)
{
    ptrdiff_t below_plain = 0, below_shifted = 0;
    switch (width) { /* a memcpy of a constant size is a load */
    case 1: GAIN_LOOP(1); break;
    case 2: GAIN_LOOP(2); break;
    case 4: GAIN_LOOP(4); break;
    default: GAIN_LOOP(8); break;
    }
    *below_plain_sum = below_plain;
    *below_shifted_sum = below_shifted;
}

/* Counting each group's elements by comparing keys with the groups' bounds takes a
   few vector compares per 64 bytes where the groups are ranges of keys (as they are
   when grouping.py makes them); elsewhere, the keys are counted, then summed. */
void group_sizes_loop(const uint8_t *bases, int width, ptrdiff_t n,
                      const uint8_t group_of_key[CONTEXTS], ptrdiff_t groups, ptrdiff_t *sizes)
{
    ptrdiff_t start = 0;
    for (ptrdiff_t g = 0; g < groups; g++)
        sizes[g] = 0;
#if HAVE_VECTOR_LOOPS
    int high[CONTEXTS], ranges = 0;
    if (vector_loops && (width == 2 || width == 4) && vector_cpu())
        ranges = key_ranges(group_of_key, high);
    if (ranges && ranges <= VECTOR_MAX_GROUPS(width)) { /* the binding checked the table */
        ptrdiff_t below[CONTEXTS] = {0};
        start = width == 2 ? count_below_2(bases, n, high, ranges, below)
                           : count_below_4(bases, n, high, ranges, below);
        for (int g = 0; g < ranges; g++)
            sizes[g] = (g + 1 < ranges ? below[g] : start) - (g ? below[g - 1] : 0);
    }
#endif
    ptrdiff_t counts[EXPONENT_KEYS];
    count_keys_loop(bases + start * width, width, n - start, 1, 0, counts);
    for (int key = 0; key < CONTEXTS; key++)
        sizes[group_of_key[key]] += counts[key];
}
