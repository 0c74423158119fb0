"""Builds the wheel with libloramesh.so inside it, tagged for this
platform: `pip install ./python` gives a `loramesh` that finds its library
with no environment variable. The library is built from the repository's
Go sources (Go 1.26 on PATH or in /usr/local/go), or taken from
build/libloramesh.so when `make lib` made it."""
import os
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def go() -> str:
    for g in (shutil.which("go"), "/usr/local/go/bin/go"):
        if g and os.access(g, os.X_OK):
            return g
    return ""


def library(dest: str) -> None:
    built = os.path.join(ROOT, "build", "libloramesh.so")
    g = go()
    if g and os.path.exists(os.path.join(ROOT, "go.mod")):
        env = dict(os.environ, GOEXPERIMENT="runtimesecret", CGO_ENABLED="1")
        subprocess.run([g, "build", "-buildmode=c-shared", "-o", dest, "./capi"], cwd=ROOT, env=env, check=True)
        h = os.path.splitext(dest)[0] + ".h"
        if os.path.exists(h):
            os.remove(h)
    elif os.path.exists(built):
        shutil.copyfile(built, dest)
    else:
        raise SystemExit("loramesh: cannot build libloramesh.so: install Go 1.26 (see README.md) "
                         "or run `make lib` in %s first" % ROOT)


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        dest = os.path.abspath(os.path.join(self.build_lib, "loramesh", "libloramesh.so"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        library(dest)


class BinaryDistribution(Distribution):
    """A wheel holding a native library is platform specific."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
