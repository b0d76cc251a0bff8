"""The one compiled part: gpt2cli.model._kernels, CPU decoding kernels (see its source). It is
optional: where it does not build (no C compiler, no OpenMP), gpt2cli uses torch's kernels."""

import sys

from setuptools import Extension, setup

openmp = [] if sys.platform in ("win32", "darwin") else ["-fopenmp"]
setup(
    ext_modules=[
        Extension(
            "gpt2cli.model._kernels",
            ["gpt2cli/model/_kernels.c"],
            extra_compile_args=["-O3", *openmp],
            extra_link_args=openmp,
            optional=True,
        )
    ]
)
