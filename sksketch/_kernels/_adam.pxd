# Adam's per-step constants, the one place the bias correction is written.
#
# Every Adam in sksketch (the SLIDE layers, the sparse head's lazy Adam, the
# dense networks) updates a parameter as
#     m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,
#     w = w * shrink - lr_t * m / (sqrt(v) + eps_t)
# with the bias corrections of step t (>= 1) folded into lr_t and eps_t
# (Kingma and Ba, section 2: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), and
# eps_t = eps sqrt(1 - b2^t) makes it exactly lr m_hat / (sqrt(v_hat) + eps)),
# and shrink = 1 - lr * weight_decay (decoupled weight decay, AdamW).

cdef struct AdamStep:
    float lr_t
    float eps_t
    float shrink


cdef inline AdamStep adam_constants(float lr, float beta1, float beta2, float eps,
                                    float weight_decay, Py_ssize_t step) noexcept nogil:
    cdef AdamStep s
    cdef float b1t = 1.0 - beta1 ** step
    cdef float b2t = 1.0 - beta2 ** step
    s.lr_t = lr * (b2t ** 0.5) / b1t
    s.eps_t = eps * (b2t ** 0.5)
    s.shrink = 1.0 - lr * weight_decay
    return s
