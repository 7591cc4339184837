# Small counter-based random numbers for nogil kernels: reproducible from a
# seed, independent of thread scheduling when seeded per example.
from libc.stdint cimport uint32_t, uint64_t


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # splitmix64 finaliser: a bijection that scrambles every input bit
    x += <uint64_t>0x9E3779B97F4A7C15
    x = (x ^ (x >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    x = (x ^ (x >> 27)) * <uint64_t>0x94D049BB133111EB
    return x ^ (x >> 31)


cdef inline uint64_t next64(uint64_t *state) noexcept nogil:
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    return mix64(state[0])


cdef inline uint32_t bounded(uint64_t *state, uint32_t n) noexcept nogil:
    # Lemire's multiply-shift: uniform enough in [0, n) for n << 2**32
    return <uint32_t>(((next64(state) >> 32) * <uint64_t>n) >> 32)
