"""Parser and writer of the Extreme Classification Repository text format.

The body of a file (after the header line) is parsed in one pass without the
GIL into preallocated CSR arrays. Errors are returned as a code and a line
number, which the Python side turns into a message naming the file.
"""

import numpy as np

from libc.math cimport isfinite, signbit
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc, strtof
from libc.stdio cimport snprintf
from libc.string cimport memcpy

from cpython.bytes cimport PyBytes_FromStringAndSize

# Error codes returned by parse_body; messages live in the Python module.
cpdef enum ParseError:
    OK = 0
    TOO_FEW_ROWS = 1
    TOO_MANY_ROWS = 2
    BAD_TOKEN = 3
    FEATURE_OUT_OF_RANGE = 4
    LABEL_OUT_OF_RANGE = 5
    DUPLICATE_FEATURE = 6
    DUPLICATE_LABEL = 7
    BAD_VALUE = 8
    CAPACITY = 9

# Exact powers of ten in float32 (10**10 = 2**10 * 5**10 and 5**10 < 2**24).
cdef float[11] POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10]


cdef inline bint _is_digit(unsigned char c) noexcept nogil:
    return c >= 48 and c <= 57


cdef inline bint _ends_token(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef inline Py_ssize_t _parse_uint(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t size,
                                   int64_t *out) noexcept nogil:
    """Digits at pos as a non-negative integer; returns the end, or -1."""
    cdef int64_t v = 0
    cdef Py_ssize_t start = pos
    while pos < size and _is_digit(buf[pos]):
        if v > <int64_t>100000000000000:  # far beyond any int32 index: stop before overflow
            return -1
        v = v * 10 + (buf[pos] - 48)
        pos += 1
    if pos == start:
        return -1
    out[0] = v
    return pos


cdef inline Py_ssize_t _parse_float(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t size,
                                    float *out) noexcept nogil:
    """A float token at pos, correctly rounded to float32; returns the end, or -1.

    Short decimals take an exact path: an integer mantissa below 2**24 scaled by
    a power of ten of at most 10 is one correctly rounded float32 operation on
    exact operands. Anything else goes through strtof.
    """
    cdef Py_ssize_t start = pos, end
    cdef uint64_t mant = 0
    cdef int digits = 0, frac = 0, exp10 = 0, exp_sign = 1, e
    cdef bint neg = False, seen_dot = False, seen_digit = False, fast = True
    cdef char tmp[64]
    cdef char *endp
    cdef float v
    if pos < size and (buf[pos] == 45 or buf[pos] == 43):  # '-' '+'
        neg = buf[pos] == 45
        pos += 1
    while pos < size:
        if _is_digit(buf[pos]):
            seen_digit = True
            if mant < <uint64_t>100000000000000000:
                mant = mant * 10 + (buf[pos] - 48)
                if seen_dot:
                    frac += 1
            else:
                fast = False
            pos += 1
        elif buf[pos] == 46 and not seen_dot:  # '.'
            seen_dot = True
            pos += 1
        else:
            break
    if not seen_digit:
        return -1
    if pos < size and (buf[pos] == 101 or buf[pos] == 69):  # 'e' 'E'
        pos += 1
        if pos < size and (buf[pos] == 45 or buf[pos] == 43):
            exp_sign = -1 if buf[pos] == 45 else 1
            pos += 1
        if pos >= size or not _is_digit(buf[pos]):
            return -1
        while pos < size and _is_digit(buf[pos]):
            if exp10 < 100000:
                exp10 = exp10 * 10 + (buf[pos] - 48)
            pos += 1
    if pos < size and not _ends_token(buf[pos]):
        return -1
    e = exp_sign * exp10 - frac
    if fast and mant < 16777216 and -10 <= e <= 10:
        if e >= 0:
            v = <float>mant * POW10[e]
        else:
            v = <float>mant / POW10[-e]
        out[0] = -v if neg else v
        return pos
    if pos - start >= 63:
        return -1
    memcpy(tmp, &buf[start], pos - start)
    tmp[pos - start] = 0
    v = strtof(tmp, &endp)
    if endp != tmp + (pos - start) or not isfinite(v):
        return -1
    out[0] = v
    return pos


def parse_body(const unsigned char[::1] buf, Py_ssize_t pos, Py_ssize_t n_rows,
               int64_t n_features, int64_t n_labels,
               int64_t[::1] x_indptr, int32_t[::1] x_indices, float[::1] x_data,
               int64_t[::1] y_indptr, int32_t[::1] y_indices):
    """Parse n_rows rows starting at byte `pos` (line 2 of the file).

    Returns ``(code, line, unsorted_x, unsorted_y)``; on success the indptr
    arrays are filled and code is OK. Indices must be unique per row; a row
    given out of order is flagged (the caller sorts it and checks duplicates).
    """
    cdef Py_ssize_t size = buf.shape[0]
    cdef const unsigned char *b = &buf[0] if size > 0 else NULL
    cdef Py_ssize_t row = 0, nx = 0, ny = 0, line = 2, end
    cdef Py_ssize_t cap_x = x_indices.shape[0], cap_y = y_indices.shape[0]
    cdef int64_t idx, prev
    cdef float val
    cdef int code = OK
    cdef bint unsorted_x = False, unsorted_y = False, labels_done
    with nogil:
        x_indptr[0] = 0
        y_indptr[0] = 0
        while row < n_rows:
            if pos >= size:
                code = TOO_FEW_ROWS
                break
            # labels: a comma-separated list, unless the first token is a feature
            labels_done = False
            prev = -1
            if _is_digit(b[pos]):
                end = _parse_uint(b, pos, size, &idx)
                if end < 0:
                    code = BAD_TOKEN
                    break
                if end < size and b[end] == 58:  # ':' -> a feature, no labels
                    labels_done = True
                else:
                    while True:
                        if idx >= n_labels:
                            code = LABEL_OUT_OF_RANGE
                            break
                        if ny >= cap_y:
                            code = CAPACITY
                            break
                        if idx == prev:
                            code = DUPLICATE_LABEL
                            break
                        if idx < prev:
                            unsorted_y = True
                        y_indices[ny] = <int32_t>idx
                        ny += 1
                        prev = idx
                        pos = end
                        if pos < size and b[pos] == 44:  # ','
                            end = _parse_uint(b, pos + 1, size, &idx)
                            if end < 0:
                                code = BAD_TOKEN
                                break
                            continue
                        if pos < size and not _ends_token(b[pos]):
                            code = BAD_TOKEN
                        break
                    if code != OK:
                        break
            # features: "index:value" separated by blanks, up to the line end
            prev = -1
            while True:
                while pos < size and (b[pos] == 32 or b[pos] == 9):
                    pos += 1
                if pos >= size or b[pos] == 10 or b[pos] == 13:
                    break
                end = _parse_uint(b, pos, size, &idx)
                if end < 0 or end >= size or b[end] != 58:
                    code = BAD_TOKEN
                    break
                if idx >= n_features:
                    code = FEATURE_OUT_OF_RANGE
                    break
                end = _parse_float(b, end + 1, size, &val)
                if end < 0:
                    code = BAD_VALUE
                    break
                if nx >= cap_x:
                    code = CAPACITY
                    break
                if idx == prev:
                    code = DUPLICATE_FEATURE
                    break
                if idx < prev:
                    unsorted_x = True
                x_indices[nx] = <int32_t>idx
                x_data[nx] = val
                nx += 1
                prev = idx
                pos = end
            if code != OK:
                break
            # line end: \n or \r\n (or the end of the file)
            if pos < size and b[pos] == 13:
                pos += 1
                if pos < size and b[pos] != 10:
                    code = BAD_TOKEN
                    break
            if pos < size and b[pos] == 10:
                pos += 1
            row += 1
            line += 1
            x_indptr[row] = nx
            y_indptr[row] = ny
        if code == OK:
            # only blank lines may follow the last row
            while pos < size:
                if b[pos] == 10:
                    line += 1
                elif not (b[pos] == 32 or b[pos] == 9 or b[pos] == 13):
                    code = TOO_MANY_ROWS
                    break
                pos += 1
    return code, line, unsorted_x, unsorted_y


cdef inline Py_ssize_t _write_uint(char *out, int64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    if v == 0:
        out[0] = 48
        return 1
    while v > 0:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline bint _reads_back(uint64_t m, int k, float target) noexcept nogil:
    """Whether the decimal m * 10**k reads as float32 `target` (> 0)."""
    cdef char tmp[40]
    cdef char *endp
    cdef float v
    if m < 16777216 and -10 <= k <= 10:
        # one correctly rounded float32 operation on exact operands
        v = <float>m * POW10[k] if k >= 0 else <float>m / POW10[-k]
        return v == target
    snprintf(tmp, 40, "%llue%d", <unsigned long long>m, k)
    return strtof(tmp, &endp) == target


cdef inline Py_ssize_t _write_float(char *out, float v) noexcept nogil:
    """Shortest decimal (6 to 9 significant digits) that reads back as the same float32.

    One correctly rounded 9-digit conversion gives the digits; shorter
    candidates are rounded from them and kept when they read back exactly
    (9 digits always do). Written like %g: plain notation for exponents in
    [-5, 9), scientific otherwise.
    """
    cdef char tmp[32]
    cdef int dig[9]
    cdef int i, p, e10, exp, q, n = 0
    cdef uint64_t m = 0, pw
    cdef char digits[12]
    cdef float a
    if v == 0 and signbit(v):
        out[0] = 45
        out[1] = 48
        return 2
    # range first: casting a float outside int64 is undefined
    if v > -1e7 and v < 1e7 and v == <float><int64_t>v:
        if v < 0:
            out[0] = 45
            return 1 + _write_uint(out + 1, <int64_t>(-v))
        return _write_uint(out, <int64_t>v)
    if v < 0:
        out[n] = 45
        n += 1
    a = -v if v < 0 else v
    snprintf(tmp, 32, "%.8e", <double>a)  # "d.dddddddde+XX"
    dig[0] = tmp[0] - 48
    for i in range(8):
        dig[i + 1] = tmp[i + 2] - 48
    e10 = 0
    i = 12 if tmp[11] == 45 or tmp[11] == 43 else 11
    while tmp[i] != 0:
        e10 = e10 * 10 + (tmp[i] - 48)
        i += 1
    if tmp[11] == 45:
        e10 = -e10
    for p in range(6, 10):
        m = 0
        for i in range(p):
            m = m * 10 + <uint64_t>dig[i]
        exp = e10
        if p < 9 and dig[p] >= 5:
            m += 1
            pw = 1
            for i in range(p):
                pw *= 10
            if m == pw:
                m //= 10
                exp += 1
        if p == 9 or _reads_back(m, exp - (p - 1), a):
            break
    # digits of m without trailing zeros
    q = 0
    while m > 0:
        digits[q] = <char>(48 + m % 10)
        m //= 10
        q += 1
    i = 0
    while i < q - 1 and digits[i] == 48:
        i += 1
    # digits[q-1] is the leading digit; digits[i] the last non-zero one
    if -5 <= exp < 9:
        if exp < 0:
            out[n] = 48
            out[n + 1] = 46
            n += 2
            for p in range(-exp - 1):
                out[n] = 48
                n += 1
            for p in range(q - 1, i - 1, -1):
                out[n] = digits[p]
                n += 1
        else:
            for p in range(q - 1, i - 1, -1):
                out[n] = digits[p]
                n += 1
                if q - 1 - p == exp and p > i:
                    out[n] = 46
                    n += 1
            for p in range(exp - (q - 1 - i)):
                out[n] = 48
                n += 1
    else:
        out[n] = digits[q - 1]
        n += 1
        if q - 1 > i:
            out[n] = 46
            n += 1
            for p in range(q - 2, i - 1, -1):
                out[n] = digits[p]
                n += 1
        n += snprintf(out + n, 8, "e%+03d", exp)
    return n


def format_rows(const int64_t[::1] x_indptr, const int32_t[::1] x_indices,
                const float[::1] x_data, const int64_t[::1] y_indptr,
                const int32_t[::1] y_indices, Py_ssize_t start, Py_ssize_t stop):
    """Rows [start, stop) in XC format, as bytes (each row ends with \\n)."""
    cdef Py_ssize_t r, j, n = 0
    cdef Py_ssize_t bound = 0
    cdef char *out
    bound = (stop - start) * 2 + (y_indptr[stop] - y_indptr[start]) * 12
    bound += (x_indptr[stop] - x_indptr[start]) * 46
    out = <char *> malloc(bound + 1)
    if out == NULL:
        raise MemoryError()
    try:
        with nogil:
            for r in range(start, stop):
                for j in range(y_indptr[r], y_indptr[r + 1]):
                    if j > y_indptr[r]:
                        out[n] = 44
                        n += 1
                    n += _write_uint(out + n, y_indices[j])
                for j in range(x_indptr[r], x_indptr[r + 1]):
                    out[n] = 32
                    n += 1
                    n += _write_uint(out + n, x_indices[j])
                    out[n] = 58
                    n += 1
                    n += _write_float(out + n, x_data[j])
                out[n] = 10
                n += 1
        return PyBytes_FromStringAndSize(out, n)
    finally:
        free(out)
