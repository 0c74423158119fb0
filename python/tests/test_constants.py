"""The binding's constants, error codes and declarations against
capi/loramesh.h, the one home of each fact."""
import os
import re

from loramesh import _lib, errors

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "capi", "loramesh.h")


def header():
    with open(HEADER) as f:
        return f.read()


def defines():
    return {m[0]: int(m[1], 0) for m in re.findall(r"#define (LM_[A-Z0-9_]+) (0x[0-9a-fA-F]+|\d+)", header())}


def test_constants_match_the_header():
    d = defines()
    checked = 0
    for name, value in vars(_lib).items():
        if name.isupper() and isinstance(value, int) and ("LM_" + name) in d:
            assert d["LM_" + name] == value, name
            checked += 1
    assert checked >= 30
    for name in ("LM_ABI_VERSION", "LM_SUITE_X25519", "LM_PACKET_TRANSPORT", "LM_MAX_OVERHEAD", "LM_EVENT_DROPPED",
                 "LM_DELIVERY_FAILED", "LM_LINK_STREAM", "LM_IMPORT_REPLACED", "LM_NAME_MAX", "LM_ADDR_MAX",
                 "LM_FEATURE_ERASE", "LM_FEATURE_MLOCK"):
        assert getattr(_lib, name[3:]) == d[name], name


def test_error_codes_match_the_header():
    codes = {m[0]: int(m[1]) for m in re.findall(r"\b(LM_(?:OK|ERR_[A-Z_]+)) = (\d+)", header())}
    assert len(codes) == len(errors.BY_CODE) + 2  # LM_OK and LM_ERR_BUFFER_TOO_SMALL have no exception
    assert codes["LM_ERR_BUFFER_TOO_SMALL"] == _lib.ERR_BUFFER_TOO_SMALL
    for name, value in codes.items():
        if name in ("LM_OK", "LM_ERR_BUFFER_TOO_SMALL"):
            continue
        cls = errors.BY_CODE[value]
        words = name[len("LM_ERR_"):].replace("_", "").lower()
        assert words[:4] in cls.__name__.lower() or name in ALIASES, (name, cls)


ALIASES = {"LM_ERR_INVALID_ARG", "LM_ERR_PIN", "LM_ERR_LOCKED", "LM_ERR_HANDLE", "LM_ERR_INVALID_KEY"}


def test_every_function_is_declared_once():
    protos = set(re.findall(r"^\w[\w \*]*?\b(lm_\w+)\(", header(), re.M))
    assert protos == set(_lib.SIGNATURES), protos ^ set(_lib.SIGNATURES)


def test_event_struct_matches_the_header():
    body = re.search(r"typedef struct lm_event \{(.*?)\} lm_event;", header(), re.S).group(1)
    fields = re.findall(r"^\s*\w+ (\w+)(?:\[|;)", body, re.M)
    assert fields == [f[0] for f in _lib.Event._fields_]
