"""The .deb (packaging/deb/build-deb, from the static binary):

- without arguments: it builds, holds the binary, the man pages (walship.toml(5)
  among them), units, completions, README and the design document, the
  example configuration and the Docker, Nomad and Kubernetes examples (byte
  for byte the repository's, the entrypoint executable), and depends on
  nothing;
- with the argument `install` (a CTest test of its own): `apt-get install
  ./walship_*.deb` works, `walship version` runs from /usr/bin, `man` finds
  the pages (walship.toml(5) too), and the package is purged again. That changes the machine, so it
  runs only as root in CI (CI=true) or with WALSHIP_TEST_INSTALL=1, and is
  SKIPPED otherwise.

The whole test is skipped when the static binary is not built.
"""
import glob
import gzip
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import TempDir, skip  # noqa: E402

SOURCE = os.path.normpath(os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))
STATIC = os.environ.get("WALSHIP_STATIC") or os.path.join(SOURCE, "build-static", "dist", "walship")


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


def build_deb(tmp):
    r = run([f"{SOURCE}/packaging/deb/build-deb", "--binary", STATIC, "--out", tmp])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def check_contents(deb):
    assert os.path.basename(deb).startswith("walship_") and deb.endswith("_amd64.deb"), deb
    contents = run(["dpkg-deb", "--contents", deb]).stdout
    for path in ("./usr/bin/walship", "./usr/share/man/man1/walship.1.gz", "./usr/share/man/man1/walship-restore.1.gz",
                 "./lib/systemd/system/walship-replicate@.service", "./lib/systemd/system/walship-snapshot@.timer",
                 "./lib/systemd/system/walship-prune.timer", "./usr/share/bash-completion/completions/walship",
                 "./usr/share/zsh/vendor-completions/_walship", "./usr/share/doc/walship/examples/walship.toml",
                 "./usr/share/doc/walship/copyright", "./usr/share/man/man5/walship.toml.5.gz",
                 "./usr/share/doc/walship/README.md.gz", "./usr/share/doc/walship/DESIGN.md.gz",
                 "./usr/share/doc/walship/examples/snapshot.env"):
        assert path in contents, f"{path} not in the .deb:\n{contents}"
    # The deployment examples, as the repository has them.
    examples = {"docker/Dockerfile", "docker/Dockerfile.app", "docker/entrypoint.sh", "nomad/app.nomad.hcl",
                "kubernetes/app.yaml"}
    with TempDir() as root:
        r = run(["dpkg-deb", "-x", deb, root])
        assert r.returncode == 0, r.stderr
        for example in sorted(examples):
            installed = f"{root}/usr/share/doc/walship/examples/{example}"
            with open(installed, "rb") as a, open(f"{SOURCE}/packaging/{example}", "rb") as b:
                assert a.read() == b.read(), f"{installed} differs from packaging/{example}"
        assert os.access(f"{root}/usr/share/doc/walship/examples/docker/entrypoint.sh", os.X_OK)
        with gzip.open(f"{root}/usr/share/doc/walship/README.md.gz", "rb") as a, \
                open(f"{SOURCE}/README.md", "rb") as b:
            assert a.read() == b.read(), "README.md.gz differs from README.md"
        pages = sorted(os.listdir(f"{root}/usr/share/man/man1") + os.listdir(f"{root}/usr/share/man/man5"))
        expected = sorted(f"{os.path.basename(p)}.gz" for p in glob.glob(f"{SOURCE}/man/*.[0-9]"))
        assert pages == expected, (pages, expected)
    info = run(["dpkg-deb", "--info", deb]).stdout
    assert "Package: walship" in info and "Architecture: amd64" in info and "Depends:" not in info, info


def install(deb):
    if os.geteuid() != 0:
        skip("installing the .deb needs root")
    if os.environ.get("CI") != "true" and os.environ.get("WALSHIP_TEST_INSTALL") != "1":
        skip("installing the .deb changes this machine: it runs in CI (CI=true) or with WALSHIP_TEST_INSTALL=1")
    if os.path.exists("/var/lib/dpkg/info/walship.list"):
        skip("a walship package is already installed here; not replacing it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "--no-install-recommends", deb],
            env=env)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        v = run(["/usr/bin/walship", "version"])
        assert v.returncode == 0 and v.stdout.startswith("walship "), v.stdout + v.stderr
        m = run(["man", "-w", "walship-restore"])
        assert m.returncode == 0 and "walship-restore.1" in m.stdout, m.stdout + m.stderr
        m = run(["man", "-w", "5", "walship.toml"])
        assert m.returncode == 0 and "walship.toml.5" in m.stdout, m.stdout + m.stderr
        assert os.path.exists("/usr/share/doc/walship/examples/kubernetes/app.yaml")
        assert os.path.exists("/lib/systemd/system/walship-replicate@.service")
    finally:
        p = run(["dpkg", "--purge", "walship"], env=env)
        assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists("/usr/bin/walship") or shutil.which("walship") != "/usr/bin/walship"


def main():
    if not os.path.exists(STATIC):
        skip(f"{STATIC} is not built (scripts/build-static)")
    with TempDir() as tmp:
        deb = build_deb(tmp)
        check_contents(deb)
        if sys.argv[1:] == ["install"]:
            install(deb)
            print("ok      installed, ran walship version, found the man pages, purged")
        else:
            print(f"ok      {os.path.basename(deb)} holds what it should")


if __name__ == "__main__":
    main()
