"""A fresh clone installed as README.md says, used from another directory
with no environment variables pointing at the tree or the library."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, timeout=600, **kw)
    assert p.returncode == 0, "%s: rc %d\n%s%s" % (" ".join(map(str, cmd)), p.returncode,
                                                  p.stdout.decode(), p.stderr.decode())
    return p


def test_fresh_clone_installs_and_two_daemons_talk(tmp_path):
    src, venv, work = tmp_path / "src", tmp_path / "venv", tmp_path / "elsewhere"
    run(["git", "clone", "-q", "--depth", "1", "file://" + ROOT, str(src)])
    # README.md, "Using it from the command line":
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LORAMESH_LIB", "LORAMESH_HOME")}
    env["PATH"] = "/usr/local/go/bin:" + env.get("PATH", "")
    run([str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation", str(src / "python")], env=env)
    work.mkdir()
    lm = str(venv / "bin" / "loramesh")
    env["PATH"] = os.path.dirname(lm) + ":/usr/bin:/bin"
    assert run([lm, "--version"], cwd=work, env=env).stdout.startswith(b"loramesh ")
    (work / "pw").write_text("install test passphrase\n")
    homes = []
    for name in ("ann", "ben"):
        home = work / name
        port = 7400 + len(homes) + os.getpid() % 500
        run([lm, "--home", str(home), "init", "--name", name, "--udp", "127.0.0.1:%d" % port, "--argon2",
             "1,64,1", "--passphrase-file", "pw"], cwd=work, env=env)
        run([lm, "--home", str(home), "card", "export", "-o", name + ".card"], cwd=work, env=env)
        homes.append((name, home, port))
    try:
        for (n, h, _), (o, _, port) in ((homes[0], homes[1]), (homes[1], homes[0])):
            run([lm, "--home", str(h), "contact", "import", o + ".card", "--addr", "udp:127.0.0.1:%d" % port,
                 "--passphrase-file", "pw"], cwd=work, env=env)
        r = run([lm, "--home", str(homes[0][1]), "--json", "send", "ben", "hello from a fresh install",
                 "--passphrase-file", "pw"], cwd=work, env=env)
        assert b'"delivered"' in r.stdout
    finally:
        for _, h, _ in homes:
            subprocess.run([lm, "--home", str(h), "stop"], cwd=work, env=env, capture_output=True)
    # The wheel carries the library: the installed package uses its own.
    site = run([str(venv / "bin" / "python"), "-c", "import loramesh._lib as l; print(l.lib()._lm_path)"],
               cwd=work, env=env).stdout.decode().strip()
    assert site.startswith(str(venv)) and site.endswith("loramesh/libloramesh.so")
