"""Build the Cython extensions of sksketch.

Every ``sksketch/_kernels/*.pyx`` becomes an extension module. The SIMD
primitives in ``sksketch/_kernels/src`` are compiled into ``_simd`` only; other
kernels reach them through ``cimport`` (one dispatch table per process).

Flags are baseline for the target (no ``-march=native``). Environment
variables a builder may set:

``SKSKETCH_NATIVE=1``
    add ``-march=native`` (the binary then runs only on CPUs like the builder's).
``SKSKETCH_NO_OPENMP=1``
    build without OpenMP even when the compiler supports it.
``SKSKETCH_DEBUG_BUILD=1``
    Cython bounds checking and wraparound on, ``-O1 -g``: slow, for testing.
"""

import os
import tempfile
import textwrap
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_DIR = os.path.join("sksketch", "_kernels")
SRC_DIR = os.path.join(KERNEL_DIR, "src")


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _compiler_accepts(compiler, flags, code, link_flags=()):
    """Compile and link a tiny program with ``flags``; True when it works."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(textwrap.dedent(code))
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=list(flags))
            compiler.link_executable(
                objects, "probe", output_dir=tmp, extra_postargs=list(link_flags)
            )
        except Exception:
            return False
    return True


_OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


class BuildExt(build_ext):
    """Pick OpenMP and optimisation flags for the compiler actually in use."""

    def build_extensions(self):
        cc = self.compiler
        is_msvc = cc.compiler_type == "msvc"
        debug = _env_flag("SKSKETCH_DEBUG_BUILD")
        if is_msvc:
            cflags = ["/Od" if debug else "/O2"]
            omp_cflags, omp_ldflags = ["/openmp"], []
        else:
            cflags = ["-O1", "-g"] if debug else ["-O3"]
            cflags += ["-fno-strict-aliasing", "-Wno-unused-function"]
            omp_cflags, omp_ldflags = ["-fopenmp"], ["-fopenmp"]
        if _env_flag("SKSKETCH_NATIVE") and not is_msvc:
            cflags.append("-march=native")

        use_openmp = False
        if not _env_flag("SKSKETCH_NO_OPENMP"):
            use_openmp = _compiler_accepts(cc, omp_cflags, _OPENMP_PROBE, omp_ldflags)
            if not use_openmp:
                print("sksketch: the compiler has no OpenMP; building single-threaded kernels")

        all_cflags = cflags + (omp_cflags if use_openmp else [])
        flags_text = " ".join(all_cflags).replace('"', "")
        for ext in self.extensions:
            ext.extra_compile_args = list(all_cflags)
            ext.extra_link_args = list(omp_ldflags if use_openmp else [])
            ext.define_macros = list(ext.define_macros) + [
                ("SKS_BUILD_FLAGS", f'"{flags_text}"'),
                ("SKS_BUILD_DEBUG", "1" if debug else "0"),
            ]
        super().build_extensions()


def _extensions():
    from Cython.Build import cythonize

    debug = _env_flag("SKSKETCH_DEBUG_BUILD")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "nonecheck": debug,
        "cdivision": not debug,
        "embedsignature": True,
    }
    extensions = []
    for pyx in sorted(glob(os.path.join(KERNEL_DIR, "*.pyx"))):
        name = os.path.splitext(pyx)[0].replace(os.sep, ".")
        sources = [pyx]
        if name.endswith("._simd"):
            sources += sorted(glob(os.path.join(SRC_DIR, "simd_*.c")))
        extensions.append(
            Extension(name, sources=sources, include_dirs=[SRC_DIR, KERNEL_DIR])
        )
    return cythonize(
        extensions,
        compiler_directives=directives,
        # One directory of generated C per build mode, so that switching modes
        # never reuses C generated with the other mode's directives.
        build_dir=os.path.join("build", "cython-debug" if debug else "cython"),
        quiet=True,
    )


if __name__ == "__main__":
    setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
