"""The one compiled part: the monitor's fused CPU reductions (``initlab.monitor._fused``, plain C without torch
headers, built in well under a second). It is optional: without a C compiler the install goes on and the monitor
uses torch kernels instead (slower per recorded step; ``initlab.monitor.fused_kernels()`` says which)."""

import sys

from setuptools import Extension, setup

# Reassociation lets the compiler split each float sum into vector lanes (4-5x faster; see the C file);
# NaN and Inf still propagate. MSVC takes its defaults.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]

setup(ext_modules=[Extension("initlab.monitor._fused", ["src/initlab/monitor/_fused.c"], extra_compile_args=FLAGS,
                             optional=True)])  # fmt: skip
