"""Build the compiled cores.  Everything declarative lives in pyproject.toml.

Environment switches (msgspec style):
  ALPHAPULSE_DEBUG=1     -O0 -g, Cython line tracing, AP_DEBUG invariant checks
  ALPHAPULSE_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer
  ALPHAPULSE_ANNOTATE=1  write Cython's HTML annotation next to each .pyx
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ALPHAPULSE_DEBUG") == "1"
SANITIZE = os.environ.get("ALPHAPULSE_SANITIZE") == "1"

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
link_args = []
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    macros += [("AP_DEBUG", "1"), ("CYTHON_TRACE_NOGIL", "1")]
if SANITIZE:
    compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    link_args += ["-fsanitize=address,undefined"]


def extension(name: str) -> Extension:
    return Extension(
        f"alphapulse.{name}",
        [f"src/alphapulse/{name.replace('.', '/')}.pyx"],
        include_dirs=["src/alphapulse", numpy.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        # headers are included at C compile time: a header-only change must rebuild the .so
        depends=sorted(glob.glob("src/alphapulse/*.h")),
    )


setup(
    ext_modules=cythonize(
        [extension("_ring"), extension("_book"), extension("_wire"), extension("exchanges._hotpath"),
         extension("exchanges._scan"), extension("exchanges._wsframes"), extension("server._dispatch")],
        compiler_directives={
            "language_level": 3,
            "embedsignature": True,
            "cdivision": True,
            "linetrace": DEBUG,
        },
        annotate=os.environ.get("ALPHAPULSE_ANNOTATE") == "1",
    ),
)
