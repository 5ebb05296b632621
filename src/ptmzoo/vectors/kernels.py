"""The compiled inner loops (numba) of word2vec, FastText and GloVe.

They release the GIL (``nogil=True``), so several Python threads train the same arrays at once
without locks, as word2vec.c, fastText and gensim do (Hogwild). The random numbers come from
word2vec.c's linear congruential generator (``r = r * 25214903917 + 11`` modulo 2^48, 32 bits taken
from ``r >> 16``), the one gensim uses too. Compiled code is cached beside this file
(``cache=True``), so only the first run after an install pays the compilation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MULTIPLIER = np.uint64(25214903917)
INCREMENT = np.uint64(11)
MASK48 = np.uint64((1 << 48) - 1)
SHIFT = np.uint64(16)

JIT = dict(nogil=True, cache=True, fastmath=True)
MAX_EXP = 6.0  # word2vec.c's sigmoid table range


@njit(**JIT)
def next_random(r):
    """word2vec.c's generator: the next state, and 32 random bits of the current one."""
    return (r * MULTIPLIER + INCREMENT) & MASK48, r >> SHIFT


@njit(**JIT)
def window_span(i, start, end, window, shrink, r):
    """The context positions [lo, hi) of position i of the sentence [start, end). With ``shrink``
    the window is cut by b uniform in [0, window) (word2vec.c's ``b = next_random % window``), so a
    word at distance d is a context with probability (window - d + 1) / window."""
    b = 0
    if shrink:
        r, bits = next_random(r)
        b = np.int64(bits % np.uint64(window))
    lo = max(start, i - window + b)
    hi = min(end, i + window + 1 - b)
    return lo, hi, r


@njit(**JIT)
def draw_negative(cum_table, r):
    """A word drawn from the unigram^0.75 distribution: binary search of a random integer in the
    cumulative table (gensim's ``bisect_left``)."""
    r, bits = next_random(r)
    x = np.int64(bits % np.uint64(cum_table[-1]))
    lo, hi = 0, len(cum_table)
    while hi > lo:
        mid = (lo + hi) >> 1
        if cum_table[mid] >= x:
            hi = mid
        else:
            lo = mid + 1
    return lo, r


@njit(**JIT)
def draw_negatives(cum_table, count, seed):
    """``count`` draws (for tests of the distribution)."""
    out = np.empty(count, np.int64)
    r = np.uint64(seed)
    for k in range(count):
        out[k], r = draw_negative(cum_table, r)
    return out


@njit(**JIT)
def subsample(ids, ends, sample_ints, r):
    """The words of a job that survive frequent-word subsampling (kept when ``sample_ints[w]`` is at
    least a random 32-bit integer), and the new sentence ends."""
    kept = np.empty(len(ids), np.int32)
    kept_ends = np.empty(len(ends), np.int64)
    m, start = 0, 0
    for s in range(len(ends)):
        for p in range(start, ends[s]):
            w = ids[p]
            r, bits = next_random(r)
            if np.int64(bits) <= sample_ints[w]:
                kept[m] = w
                m += 1
        kept_ends[s] = m
        start = ends[s]
    return kept[:m], kept_ends, r


@njit(**JIT)
def context_distances(length, window, shrink, seed):
    """How often each distance 1..window is a context pair in a sentence of ``length`` words
    (the window logic of the training kernel, for tests)."""
    counts = np.zeros(window + 1, np.int64)
    r = np.uint64(seed)
    for i in range(length):
        lo, hi, r = window_span(i, 0, length, window, shrink, r)
        for j in range(lo, hi):
            if j != i:
                counts[abs(j - i)] += 1
    return counts


@njit(**JIT)
def _sigmoid(f):
    return 1.0 / (1.0 + math.exp(-f))


@njit(**JIT)
def _dot(a, b):
    total = np.float32(0.0)
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total


@njit(**JIT)
def _axpy(alpha, x, y):
    """y += alpha * x"""
    for k in range(x.shape[0]):
        y[k] += alpha * x[k]


@njit(**JIT)
def _train_output(l1, word, work, alpha, syn1neg, syn1, cum_table, negative, code_starts, codes, points, hs, r):
    """One input vector ``l1`` predicts ``word``: hierarchical softmax along its Huffman code and/or
    negative sampling; the gradient for the input is added to ``work``. The sigmoid is exact; as in
    word2vec.c, a tree node whose score is beyond +-6 is skipped, while a negative-sampling score
    there still gets its (saturated) update."""
    if hs:
        for k in range(code_starts[word], code_starts[word + 1]):
            node = syn1[points[k]]
            f = _dot(l1, node)
            if f <= -MAX_EXP or f >= MAX_EXP:
                continue  # word2vec.c (and gensim) skip a saturated node
            g = np.float32((1.0 - codes[k] - _sigmoid(f)) * alpha)
            _axpy(g, node, work)
            _axpy(g, l1, node)
    if negative > 0:
        for d in range(negative + 1):
            if d == 0:
                target, label = word, 1.0
            else:
                target, r = draw_negative(cum_table, r)
                if target == word:
                    continue
                label = 0.0
            row = syn1neg[target]
            g = np.float32((label - _sigmoid(_dot(l1, row))) * alpha)
            _axpy(g, row, work)
            _axpy(g, l1, row)
    return r


@njit(**JIT)
def _add_input(word, syn0, ngrams, sub_starts, sub_ids, neu1):
    """neu1 += the rows of ``word``: its own vector and its n-gram vectors; returns how many."""
    _axpy(np.float32(1.0), syn0[word], neu1)
    for k in range(sub_starts[word], sub_starts[word + 1]):
        _axpy(np.float32(1.0), ngrams[sub_ids[k]], neu1)
    return 1 + sub_starts[word + 1] - sub_starts[word]


@njit(**JIT)
def _apply_input(word, work, syn0, ngrams, sub_starts, sub_ids):
    _axpy(np.float32(1.0), work, syn0[word])
    for k in range(sub_starts[word], sub_starts[word + 1]):
        _axpy(np.float32(1.0), work, ngrams[sub_ids[k]])


@njit(**JIT)
def train_batch(ids, ends, alpha, seed, syn0, ngrams, sub_starts, sub_ids, syn1neg, syn1, cum_table,
                sample_ints, code_starts, codes, points, window, negative, skipgram, hs, cbow_mean, shrink,
                center_input):
    """Train on one job of sentences (word ids, sentence ends); returns the words trained after
    subsampling.

    An input is a word's own vector plus, for FastText, its character n-gram vectors (the mean of
    them all; word2vec passes no n-grams). Skip-gram: each input predicts each word in its window
    (word2vec: the context word's vector predicts the centre word; FastText, ``center_input``: the
    centre word's n-grams predict the context). CBOW: the mean (``cbow_mean``) or sum of the window
    predicts the centre word, and every window row receives the whole error (word2vec.c).
    """
    r = np.uint64(seed)
    words, sentence_ends, r = subsample(ids, ends, sample_ints, r)
    dim = syn0.shape[1]
    neu1 = np.empty(dim, np.float32)
    work = np.empty(dim, np.float32)
    start = 0
    for s in range(len(sentence_ends)):
        end = sentence_ends[s]
        for i in range(start, end):
            lo, hi, r = window_span(i, start, end, window, shrink, r)
            if skipgram:
                for j in range(lo, hi):
                    if j == i:
                        continue
                    source, target = (words[i], words[j]) if center_input else (words[j], words[i])
                    work[:] = 0.0
                    if sub_starts[source + 1] == sub_starts[source]:
                        l1 = syn0[source]  # no n-grams: the word's own row is the input
                    else:
                        neu1[:] = 0.0
                        rows = _add_input(source, syn0, ngrams, sub_starts, sub_ids, neu1)
                        for k in range(dim):
                            neu1[k] /= rows
                        l1 = neu1
                    r = _train_output(l1, target, work, alpha, syn1neg, syn1, cum_table, negative, code_starts,
                                      codes, points, hs, r)
                    _apply_input(source, work, syn0, ngrams, sub_starts, sub_ids)
            else:
                neu1[:] = 0.0
                rows = 0
                for j in range(lo, hi):
                    if j != i:
                        rows += _add_input(words[j], syn0, ngrams, sub_starts, sub_ids, neu1)
                if rows == 0:
                    continue
                if cbow_mean:
                    for k in range(dim):
                        neu1[k] /= rows
                work[:] = 0.0
                r = _train_output(neu1, words[i], work, alpha, syn1neg, syn1, cum_table, negative, code_starts,
                                  codes, points, hs, r)
                if not cbow_mean:
                    for k in range(dim):
                        work[k] /= rows
                for j in range(lo, hi):
                    if j != i:
                        _apply_input(words[j], work, syn0, ngrams, sub_starts, sub_ids)
        start = end
    return len(words)


# ------------------------------------------------------------------------------ Huffman tree
@njit(**JIT)
def huffman_tree(counts):
    """word2vec.c's ``CreateBinaryTree`` for counts sorted in descending order: two queues (the
    leaves from the rarest up, the inner nodes in creation order) give the Huffman tree in linear
    time. Returns, per word, the code bits and inner-node indices from the root down, as flat arrays
    with offsets ``starts`` (word w: ``codes[starts[w]:starts[w + 1]]``)."""
    n = len(counts)
    weight = np.empty(2 * n - 1, np.int64)
    weight[:n] = counts
    parent = np.zeros(2 * n - 1, np.int64)
    bit = np.zeros(2 * n - 1, np.uint8)
    leaf, inner = n - 1, n  # next leaf (rarest first) and next inner node to merge
    for a in range(n - 1):
        picked = np.empty(2, np.int64)
        for p in range(2):
            if leaf >= 0 and (inner >= n + a or weight[leaf] < weight[inner]):
                picked[p] = leaf
                leaf -= 1
            else:
                picked[p] = inner
                inner += 1
        weight[n + a] = weight[picked[0]] + weight[picked[1]]
        parent[picked[0]] = n + a
        parent[picked[1]] = n + a
        bit[picked[1]] = 1
    root = 2 * n - 2
    lengths = np.zeros(n, np.int64)
    for w in range(n):
        node = w
        while node != root:
            lengths[w] += 1
            node = parent[node]
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum(lengths)
    codes = np.empty(starts[-1], np.uint8)
    points = np.empty(starts[-1], np.int32)
    for w in range(n):
        k = starts[w + 1] - 1  # filled from the leaf up, so read from the root down
        node = w
        while node != root:
            codes[k] = bit[node]
            points[k] = parent[node] - n  # inner node n + a is row a of the output matrix
            node = parent[node]
            k -= 1
    return starts, codes, points


# ------------------------------------------------------------------------------ FastText n-grams
FNV_OFFSET = np.uint64(2166136261)
FNV_PRIME = np.uint64(16777619)
LOW32 = np.uint64(0xFFFFFFFF)


@njit(**JIT)
def _fnv_step(h, byte):
    """One byte of fastText's 32-bit FNV-1a; the byte is sign-extended as a C ``int8_t`` (fastText's
    quirk, which gensim reproduces), so bytes >= 0x80 set the high 24 bits."""
    value = np.uint64(byte)
    if value >= 128:
        value |= np.uint64(0xFFFFFF00)
    return ((h ^ value) * FNV_PRIME) & LOW32


@njit(**JIT)
def ngram_hashes(utf8, min_n, max_n, buckets):
    """Buckets of the character n-grams (``min_n``..``max_n`` characters) of a word given as the
    UTF-8 bytes of ``<word>``: fastText's ``computeSubwords`` (n-grams cut at character boundaries,
    single boundary characters skipped) hashed with its FNV-1a variant (each byte sign-extended
    first), the same buckets as gensim's ``ft_ngram_hashes``."""
    out = np.empty(len(utf8) * max_n, np.int64)
    m = 0
    size = len(utf8)
    for i in range(size):
        if (utf8[i] & 0xC0) == 0x80:
            continue  # a continuation byte: not the start of a character
        j, n = i, 1
        h = FNV_OFFSET
        while j < size and n <= max_n:
            h = _fnv_step(h, utf8[j])
            j += 1
            while j < size and (utf8[j] & 0xC0) == 0x80:
                h = _fnv_step(h, utf8[j])
                j += 1
            if n >= min_n and not (n == 1 and (i == 0 or j == size)):
                out[m] = np.int64(h) % buckets
                m += 1
            n += 1
    return out[:m]


# ------------------------------------------------------------------------------ GloVe
@njit(**JIT)
def cooccurrence_pairs(ids, ends, window, vocab_size):
    """The co-occurrences of one job: for each word, each word up to ``window`` positions before it
    in the same sentence, weighted 1/distance, both ways (GloVe's symmetric window). Returns the
    pair keys ``row * vocab_size + col`` and the weights."""
    total = 0
    start = 0
    for s in range(len(ends)):
        length = ends[s] - start
        total += 2 * (length * window - window * (window + 1) // 2 if length > window else length * (length - 1) // 2)
        start = ends[s]
    keys = np.empty(total, np.int64)
    weights = np.empty(total, np.float64)
    m, start = 0, 0
    for s in range(len(ends)):
        end = ends[s]
        for i in range(start, end):
            for j in range(max(start, i - window), i):
                w = 1.0 / (i - j)
                keys[m] = np.int64(ids[i]) * vocab_size + ids[j]
                keys[m + 1] = np.int64(ids[j]) * vocab_size + ids[i]
                weights[m] = w
                weights[m + 1] = w
                m += 2
        start = end
    return keys[:m], weights[:m]


@njit(**JIT)
def glove_pass(order, rows, cols, counts, W, Wc, b, bc, grad_W, grad_Wc, grad_b, grad_bc, x_max, power, eta):
    """AdaGrad over the co-occurrences in ``order`` (glove.c): minimise
    f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2 with f(x) = min(1, (x / x_max)^power); returns the
    summed cost 0.5 f diff^2."""
    cost = 0.0
    dim = W.shape[1]
    for n in order:
        i, j, x = rows[n], cols[n], counts[n]
        diff = _dot(W[i], Wc[j]) + b[i] + bc[j] - math.log(x)
        fdiff = diff if x > x_max else (x / x_max) ** power * diff
        cost += 0.5 * fdiff * diff
        fdiff *= eta
        for k in range(dim):
            gi = fdiff * Wc[j, k]
            gj = fdiff * W[i, k]
            W[i, k] -= gi / math.sqrt(grad_W[i, k])
            Wc[j, k] -= gj / math.sqrt(grad_Wc[j, k])
            grad_W[i, k] += gi * gi
            grad_Wc[j, k] += gj * gj
        b[i] -= fdiff / math.sqrt(grad_b[i])
        bc[j] -= fdiff / math.sqrt(grad_bc[j])
        grad_b[i] += fdiff * fdiff
        grad_bc[j] += fdiff * fdiff
    return cost
