"""The packaging checks CI runs:

- every man page in man/ equals what scripts/gen-man makes from the binary's
  --help (one per command `walship --help` lists, none for a command that
  is gone), and renders with `man -l` without warnings;
- the bash completion parses and completes commands and options; the zsh
  one parses (when zsh is installed);
- `systemd-analyze verify` accepts every unit (templates as an instance);
- the example entrypoint restores on start and replicates --exec the app,
  and a second start on an empty disk gets the app's data back;
- the Nomad and Kubernetes examples keep the prestart/init restore and the
  replicate sidecar, with restore options walship has;
"""
import glob
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, Skipped, run_tests  # noqa: E402

SOURCE = os.path.normpath(os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def test_man_pages_match_help(tmp):
    r = run([os.path.join(SOURCE, "scripts", "gen-man"), "--check", "--walship", WALSHIP])
    assert r.returncode == 0, r.stderr
    section = run([WALSHIP, "--help"]).stdout.split("Subcommands:\n")[1].split("\n\n")[0]
    commands = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    pages = sorted(os.path.basename(p) for p in glob.glob(f"{SOURCE}/man/*.1"))
    assert "restore" in commands and "version" in commands, commands
    assert pages == sorted(["walship.1"] + [f"walship-{c}.1" for c in commands]), pages


def test_man_pages_render(tmp):
    if not shutil.which("man"):
        raise Skipped("man is not installed")
    for page in sorted(glob.glob(f"{SOURCE}/man/*.1")):
        r = run(["man", "--warnings", "-l", page], env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat",
                                                         "PAGER": "cat", "LANG": "C.UTF-8"})
        assert r.returncode == 0, f"{page}: {r.stderr}"
        assert r.stderr.strip() == "", f"{page}: warnings:\n{r.stderr}"
        assert "NAME" in r.stdout and "SYNOPSIS" in r.stdout and "EXIT STATUS" in r.stdout, r.stdout


def complete(words):
    """The bash completions for a command line whose last word is being typed."""
    script = (f"source {SOURCE}/packaging/completions/walship.bash\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_walship; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = run(["bash", "-c", script], cwd="/")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion(tmp):
    assert run(["bash", "-n", f"{SOURCE}/packaging/completions/walship.bash"]).returncode == 0
    assert complete(["walship", "re"]) == ["replicate", "restore"]
    assert "--if-replica-exists" in complete(["walship", "restore", "--if"])
    assert complete(["walship", "snapshot", "--zs"]) == ["--zstd-level"]
    assert "--log-format" in complete(["walship", "--log"])


def test_zsh_completion(tmp):
    if not shutil.which("zsh"):
        raise Skipped("zsh is not installed")
    r = run(["zsh", "-n", f"{SOURCE}/packaging/completions/_walship"])
    assert r.returncode == 0, r.stderr


def test_systemd_units_verify(tmp):
    if not shutil.which("systemd-analyze"):
        raise Skipped("systemd-analyze is not installed")
    # The units name /usr/bin/walship, which verify checks is executable: they
    # are verified as copies that name the binary under test.
    units = []
    for path in sorted(glob.glob(f"{SOURCE}/packaging/systemd/*")):
        name = os.path.basename(path).replace("@.", "@test.")
        with open(path) as f:
            text = f.read().replace("/usr/bin/walship", os.path.abspath(WALSHIP))
        with open(f"{tmp}/{name}", "w") as f:
            f.write(text)
        units.append(name)
    assert any(u.startswith("walship-replicate@") for u in units), units
    r = run(["systemd-analyze", "verify", "--man=no", *[f"{tmp}/{u}" for u in units]])
    # Messages about units of the host (not ours) are not this test's business.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "walship" in line]
    assert r.returncode == 0 and not ours, "\n".join(ours) or r.stderr
    for name in units:
        text = open(f"{tmp}/{name}").read()
        if name.endswith(".service"):
            for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict"):
                assert setting in text, f"{name} lacks {setting}"
    prune = open(f"{tmp}/walship-prune.service").read()
    assert "DynamicUser=yes" in prune
    # The prune service runs only once walship has the command.
    condition = next(line for line in prune.splitlines() if line.startswith("ExecCondition="))
    command = condition[len("ExecCondition="):]
    assert command.startswith("/bin/sh -c '") and command.endswith("'"), command
    has_prune = "\n  prune " in run([WALSHIP, "--help"]).stdout
    r = run(["/bin/sh", "-c", command[len("/bin/sh -c '"):-1]])
    assert (r.returncode == 0) == has_prune, f"ExecCondition exit {r.returncode}, walship has prune: {has_prune}"


def test_entrypoint_restores_then_replicates(tmp):
    bindir = f"{tmp}/bin"
    os.makedirs(bindir)
    os.symlink(os.path.abspath(WALSHIP), f"{bindir}/walship")
    app = f"{tmp}/app.py"
    with open(app, "w") as f:
        f.write("import sqlite3, sys\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('PRAGMA journal_mode=WAL')\n"
                "db.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')\n"
                "n = db.execute('SELECT count(*) FROM t').fetchone()[0]\n"
                "db.execute('INSERT INTO t(payload) VALUES(?)', (sys.argv[2].encode(),))\n"
                "print(n + 1)\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "WALSHIP_REPLICA": f"file://{tmp}/replica"}
    entrypoint = f"{SOURCE}/packaging/docker/entrypoint.sh"
    # First start: no replica yet; the app creates the database and its row is shipped.
    r = run([entrypoint, "python3", app, f"{tmp}/node1/app.db", "it's one"],
            env={**env, "WALSHIP_DB": f"{tmp}/node1/app.db"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "1", r.stdout + r.stderr
    # The node is gone: a fresh disk restores the row, then the app adds one.
    r = run([entrypoint, "python3", app, f"{tmp}/node2/app.db", "two"], env={**env, "WALSHIP_DB": f"{tmp}/node2/app.db"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2", r.stdout + r.stderr
    run([WALSHIP, "restore", f"file://{tmp}/replica", "-o", f"{tmp}/check.db"], check=True)
    import sqlite3
    rows = sqlite3.connect(f"{tmp}/check.db").execute("SELECT payload FROM t ORDER BY id").fetchall()
    assert rows == [(b"it's one",), (b"two",)], rows
    r = run([entrypoint], env={**env, "WALSHIP_DB": f"{tmp}/x.db"})
    assert r.returncode == 2 and "give the app's command" in r.stderr, r.stderr


def test_orchestrator_examples_keep_the_pattern(tmp):
    """The Nomad and Kubernetes examples restore before the app and replicate
    beside it with options walship has (checked against --help)."""
    restore_help = run([WALSHIP, "restore", "--help"]).stdout
    for flag in ("--if-replica-exists", "--if-db-not-exists", "-o,"):
        assert flag in restore_help, flag
    hcl = open(f"{SOURCE}/packaging/nomad/app.nomad.hcl").read()
    compact = " ".join(hcl.split())
    for needle in ('hook = "prestart"', 'hook = "poststart" sidecar = true', "unlimited = true",
                   '"restore", "--if-replica-exists"', 'args = ["replicate",'):
        assert needle in compact, f"{needle!r} not in the Nomad job"
    assert hcl.count("{") == hcl.count("}"), "unbalanced braces in the Nomad job"
    try:
        import yaml
    except ImportError:
        raise Skipped("python3-yaml is not installed")
    spec = yaml.safe_load(open(f"{SOURCE}/packaging/kubernetes/app.yaml"))["spec"]["template"]["spec"]
    init = {c["name"]: c for c in spec["initContainers"]}
    assert init["restore"]["args"][:2] == ["restore", "--if-replica-exists"], init["restore"]
    assert init["replicate"]["restartPolicy"] == "Always" and init["replicate"]["args"][0] == "replicate"
    assert [c["name"] for c in spec["containers"]] == ["app"]


def main():
    run_tests([test_man_pages_match_help, test_man_pages_render, test_bash_completion, test_zsh_completion,
               test_systemd_units_verify, test_entrypoint_restores_then_replicates,
               test_orchestrator_examples_keep_the_pattern])


if __name__ == "__main__":
    main()
