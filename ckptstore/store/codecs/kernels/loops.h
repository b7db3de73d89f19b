/* The loops of the codecs' byte-plane transforms, in plain C (no Python): a block's
   whole elements to and from the byte planes that codecs 4 to 6 compress, with the
   zigzag delta on a base block, the grouping of elements by their base's key and a
   bias per group folded in; codec 7's planes of elements grouped by their own
   exponent; and the counts that choose groupings. planes.py, grouping.py and
   estimate.py do the same in numpy; _kernels.c checks every argument before a loop
   runs, so the loops trust theirs. */
#ifndef CKPTSTORE_LOOPS_H
#define CKPTSTORE_LOOPS_H

#include <stddef.h>
#include <stdint.h>

#define CONTEXTS 128 /* group keys: a base element's top byte, sign bit dropped */
#define EXPONENT_KEYS 256 /* codec 7's keys: an element's top byte once rotated left a bit */
#define MAX_GROUPS EXPONENT_KEYS
#define CODE_LENGTHS 66 /* bit lengths of a code counted apart: as many as numpy's frexp gives */

typedef struct {
    int grouped;
    uint8_t group_of_key[EXPONENT_KEYS];
    ptrdiff_t cursor[MAX_GROUPS]; /* where the group's next element goes */
    ptrdiff_t end[MAX_GROUPS];    /* ... and where the group ends */
    uint64_t bias[MAX_GROUPS];    /* what the group's differences lose (codec 6) */
    uint8_t *scratch;             /* n elements in grouped order (grouped, width > 1) */
} Layout;

/* (source, base or NULL, target, n, layout) -> 0, or -1 when a group holds more
   elements than its size (then nothing was written past the group). Indexed by the
   element width (1, 2, 4, 8; NULL elsewhere): splits make planes of elements,
   assembles elements of planes. */
typedef int (*Loop)(const uint8_t *, const uint8_t *, uint8_t *, ptrdiff_t, Layout *);
extern const Loop plane_splits[9];
extern const Loop plane_assembles[9];

/* Codec 7, for widths 2, 4 and 8 (NULL elsewhere): (source, scratch of n * width
   bytes, target, n, layout) -> 0 or -1 as above. */
typedef int (*ExponentLoop)(const uint8_t *, uint8_t *, uint8_t *, ptrdiff_t, Layout *);
extern const ExponentLoop exponent_assembles[9];

/* Codec 7's planes of n elements of raws (width 2, 4 or 8) into planes, grouped by
   layout->group_of_key (each key's group below ``groups``); the size of each group
   to sizes. Returns 0, or -1 as above. */
int split_exponents_loop(const uint8_t *raws, int width, ptrdiff_t n, ptrdiff_t groups,
                         Layout *layout, uint8_t *scratch, uint8_t *planes, ptrdiff_t *sizes);

/* How many of the elements 0, stride, 2 * stride... of n have each key: CONTEXTS
   group keys of base elements, or with ``exponents`` EXPONENT_KEYS of codec 7's. */
void count_keys_loop(const uint8_t *data, int width, ptrdiff_t n, ptrdiff_t stride,
                     int exponents, ptrdiff_t counts[EXPONENT_KEYS]);

/* How many of n elements fall in each group (its base key's group in group_of_key,
   each below ``groups``), to sizes. */
void group_sizes_loop(const uint8_t *bases, int width, ptrdiff_t n,
                      const uint8_t group_of_key[CONTEXTS], ptrdiff_t groups, ptrdiff_t *sizes);

/* Nonzero (the default): the loops above take vector instructions where the CPU has
   them; zero: scalar loops alone (tests compare the two). */
extern int vector_loops;

/* What grouping_gain_bits (estimate.py) counts on the elements 0, stride, 2 * stride...
   of n (width 1, 2, 4 or 8): the bit length of each one's zigzag code against the base
   element, plain and less its group's bias, as joint (groups x CODE_LENGTHS counts
   of group and biased length, zeroed by the caller), plain (CODE_LENGTHS counts of
   plain length, likewise), and the sums of max(length - 1, 0) of both. */
void gain_counts_loop(const uint8_t *ours, const uint8_t *theirs, int width, ptrdiff_t n,
                      ptrdiff_t stride, const uint8_t group_of_key[CONTEXTS],
                      const uint64_t bias[CONTEXTS], ptrdiff_t *joint,
                      ptrdiff_t plain[CODE_LENGTHS], ptrdiff_t *below_plain,
                      ptrdiff_t *below_shifted);

#endif
