# The cffi extension for the ptrace platform's hot path is built here;
# everything else is declared in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["platforms/ptrace/_build_ptrace.py:ffibuilder"])
