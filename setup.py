"""Builds the optional C row hash; everything else is in ``pyproject.toml``.

``metaxy_core/_native/row_hash.c`` becomes a shared library in the same folder, which
:mod:`metaxy_core.native_hash` loads with ctypes. It is not a Python module and needs no Python
headers; the folder is not a package, so tools that import every module never meet it.
``optional=True``: without a C compiler the install still succeeds and hashing falls back to
Polars (the same bits, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "metaxy_core._native.row_hash",
            sources=["metaxy_core/_native/row_hash.c"],
            extra_compile_args=["-O3", "-fvisibility=hidden"],
            optional=True,
        )
    ],
)
