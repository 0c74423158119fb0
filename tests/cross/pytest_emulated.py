"""pytest plugin for the binding's tests under an emulated interpreter
(tests/cross, `-p pytest_emulated`).

A program under qemu-user can start native programs (swtpm, openssl) but not
another emulated one unless binfmt_misc is set up, which tests/cross does
not rely on. The tests that start the CLI's daemon (another Python process)
are therefore deselected, and the count is shown.
"""

# Fixtures that start another Python process.
SPAWNS = {"make_node"}


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        (drop if SPAWNS & set(getattr(item, "fixturenames", ())) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    import platform
    import sys
    return "emulated: python %s on %s (tests that start another Python are deselected)" % (
        sys.version.split()[0], platform.machine())
