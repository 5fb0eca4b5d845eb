# The cffi extension for the ptrace platform's hot path is built here;
# everything else is declared in pyproject.toml.
import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


# -- the sandbox's vDSO (sentry/vdso): built by the build backend, shipped as package data.
# A wheel (or `pip install .`) gets it in its build directory; an editable install in the source
# tree, where install.sh's own sentry/vdso/build.sh run puts it too.  gcc is needed, as for cffi.
class BuildPyWithVdso(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        script = os.path.join(here, "sentry", "vdso", "build.sh")
        if getattr(self, "editable_mode", False):
            out = os.path.join(here, "sentry", "vdso", "vdso.so")
        else:
            out = os.path.join(os.path.abspath(self.build_lib), "sentry", "vdso", "vdso.so")
            os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["bash", script, out], check=True)

    def get_outputs(self, include_bytecode=True):
        outs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outs.append(os.path.join(self.build_lib, "sentry", "vdso", "vdso.so"))
        return outs


setup(
    cffi_modules=["platforms/ptrace/_build_ptrace.py:ffibuilder", "platforms/_build_hostarch.py:ffibuilder",
                  "platforms/kvm/_build_kvm.py:ffibuilder",
                  "platforms/seccomp_notify/_build_notify.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithVdso},
)
