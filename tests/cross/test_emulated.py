"""Checks that only make sense under the emulated interpreter (tests/cross
sets the LM_CROSS_* variables): this really is the other architecture, and
the binding's copy of struct lm_event is laid out as that architecture's C
compiler lays it out (on 32-bit ARM, 64-bit fields are 8-byte aligned)."""
import ctypes
import os
import platform

import loramesh as lm
from loramesh import _lib


def test_the_interpreter_runs_on_the_emulated_architecture():
    assert platform.machine() == os.environ["LM_CROSS_MACHINE"]
    assert ctypes.sizeof(ctypes.c_void_p) * 8 == int(os.environ["LM_CROSS_BITS"])
    assert ctypes.sizeof(ctypes.c_size_t) * 8 == int(os.environ["LM_CROSS_BITS"])


def test_the_library_is_the_cross_build():
    f = lm.features()
    assert f.platform == "linux/" + os.environ["LM_CROSS_GOARCH"], f.text
    assert f.erase == (os.environ["LM_CROSS_GOARCH"] in ("amd64", "arm64")), f.text


def test_event_layout_matches_the_c_compiler():
    c = dict(kv.split("=") for kv in os.environ["LM_CROSS_LAYOUT"].split())
    assert ctypes.sizeof(_lib.Event) == int(c.pop("size"))
    assert sorted(c) == sorted(f[0] for f in _lib.Event._fields_)
    for name, offset in c.items():
        assert getattr(_lib.Event, name).offset == int(offset), name
