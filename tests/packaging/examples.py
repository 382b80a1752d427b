"""Runs documented example commands (README, --help and man pages, systemd
units, orchestrator manifests) for real, in a throwaway root.

The examples name absolute paths (/data/app.db, file:///backups/app,
/etc/walship/...). A Sandbox maps each of those top-level folders into its
own folder, so an example runs as written, only moved: `walship` on PATH is
the binary under test. A command that serves until it is stopped (replicate
without --exec, serve-replica) is started, must do its job (a snapshot in
its file:// replica, the database it follows), then gets SIGTERM and must
exit 0.
"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, free_port, http_get, stop  # noqa: E402

TOP_FOLDERS = ("data", "backups", "tmp", "etc", "srv", "var", "mnt", "alloc")


class Sandbox:
    def __init__(self, tmp):
        self.root = os.path.join(tmp, "root")
        self.bin = os.path.join(tmp, "bin")
        os.makedirs(self.bin, exist_ok=True)
        for folder in TOP_FOLDERS:
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        if not os.path.exists(os.path.join(self.bin, "walship")):
            os.symlink(os.path.abspath(WALSHIP), os.path.join(self.bin, "walship"))
        self.env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def move(self, text):
        """`text` with every absolute path under one of TOP_FOLDERS moved into
        the sandbox (in file:// URLs too)."""
        folders = "|".join(TOP_FOLDERS)
        text = re.sub(rf"file:///({folders})/", lambda m: f"file://{self.root}/{m.group(1)}/", text)
        # SQLite URIs: file:/data/app.db?mode=ro
        text = re.sub(rf"file:/({folders})/", lambda m: f"file:{self.root}/{m.group(1)}/", text)
        return re.sub(rf"(?<![\w./:-])/({folders})(?=/)", lambda m: f"{self.root}/{m.group(1)}", text)

    def path(self, path):
        return self.move(path) if path.startswith("/") else path

    def write(self, path, text):
        """Writes `text` (moved) at the sandboxed `path`; returns that path."""
        target = self.path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(self.move(text))
        return target

    def run(self, argv_or_line, env=None, timeout=300, moved=False):
        """Runs an argv list, or a shell line with bash (pipefail, as a
        reader's shell would fail it), moved into the sandbox (unless
        `moved`: it is there already)."""
        full_env = {**self.env, **(env or {})}
        move = (lambda t: t) if moved else self.move
        if isinstance(argv_or_line, str):
            argv = ["bash", "-o", "pipefail", "-c", move(argv_or_line)]
        else:
            argv = [move(a) for a in argv_or_line]
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=self.root)

    def serve(self, argv, ready, what, env=None, timeout=60, moved=False):
        """Starts a command that serves until stopped, waits until `ready()`
        (failing, with its output, if it exits first), then SIGTERMs it and
        asserts exit 0. Returns its stderr. `moved`: argv is in the sandbox
        already."""
        if not moved:
            argv = [self.move(a) for a in argv]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**self.env, **(env or {})}, cwd=self.root)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    raise AssertionError(f"{' '.join(argv)} exited {proc.returncode} before {what}:\n{out}{err}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(argv)}: timed out waiting for {what}")
                time.sleep(0.05)
            code = stop(proc, signal.SIGTERM)
            out, err = proc.communicate()
            assert code == 0, f"{' '.join(argv)} exited {code} on SIGTERM:\n{out}{err}"
            return err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def has_snapshot(url_or_path):
    """Whether a (sandboxed) file:// replica holds a snapshot."""
    folder = url_or_path[len("file://"):] if url_or_path.startswith("file://") else url_or_path
    snapshots = os.path.join(folder, "snapshots")
    return os.path.isdir(snapshots) and any(n.endswith(".snap") for n in os.listdir(snapshots))


def split_command(line, env):
    """A systemd ExecStart= command line as systemd runs it: prefixes dropped,
    words split with shell-like quoting, then "${NAME}" (inside or as a word)
    replaced by the value as one argument and a bare $NAME word split on
    whitespace into any number of arguments (systemd.service(5),
    "Command lines")."""
    line = line.lstrip("-@:+!")
    argv = []
    for word in shlex.split(line):
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            argv += env.get(bare.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def read_environment_file(path):
    """NAME=value lines of an EnvironmentFile= (comments, blank lines and
    surrounding quotes as systemd treats them)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            name, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[name.strip()] = value
    return env


def unit_command(sandbox, unit_path, instance=None):
    """(argv, environment) of a unit's ExecStart= the way systemd would run
    it: %i replaced by `instance`, every Environment= and EnvironmentFile=
    (a missing optional one, "-PATH", skipped) applied, paths moved into the
    sandbox and /usr/bin/walship being the binary under test."""
    with open(unit_path) as f:
        text = f.read()
    if instance is not None:
        text = text.replace("%i", instance).replace("%I", instance)
    # Moved once, here: the environment files were written moved already.
    text = sandbox.move(text.replace("%%", "%")).replace("/usr/bin/walship", os.path.abspath(WALSHIP))
    env = {}
    exec_start = None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            for assignment in shlex.split(value):
                name, _, v = assignment.partition("=")
                env[name] = v
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            path = value.lstrip("-")
            if os.path.exists(path):
                env.update(read_environment_file(path))
            else:
                assert optional, f"{unit_path}: EnvironmentFile {path} is missing"
        elif key == "ExecStart":
            assert exec_start is None, f"{unit_path}: more than one ExecStart="
            exec_start = value
    assert exec_start, f"{unit_path} has no ExecStart="
    return split_command(exec_start, env), env


def add_rows(path, count):
    """Commits `count` rows to a test database (table t, as create_db makes it)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("BEGIN")
    first = db.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0] + 1
    db.executemany("INSERT INTO t(id, payload) VALUES(?, ?)",
                   ((n, os.urandom(200)) for n in range(first, first + count)))
    db.execute("COMMIT")
    db.close()


def has_table_t(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM sqlite_schema WHERE name = 't'").fetchone()[0] == 1
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def install_app(box, db):
    """`myapp` on the sandbox's PATH: an app that commits a few rows to `db`
    (a sandboxed path) and exits 0, whatever its arguments."""
    with open(f"{box.bin}/myapp", "w") as f:
        f.write("#!/usr/bin/env python3\nimport os, sqlite3\n"
                f"db = sqlite3.connect({db!r}, isolation_level=None, timeout=30)\n"
                "db.execute('PRAGMA journal_mode=WAL')\n"
                "db.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')\n"
                "for _ in range(5):\n"
                "    db.execute('INSERT INTO t(payload) VALUES(?)', (os.urandom(200),))\n")
    os.chmod(f"{box.bin}/myapp", 0o755)


def files_under(folder, suffixes):
    return sum(1 for _, _, names in os.walk(folder) for n in names if n.endswith(suffixes))


def point_time(point):
    """An RFC 3339 time at which `point` (an `ls --json` entry) is the newest
    restore point."""
    for key in ("point_time", "time", "commit_time"):
        if key in point:
            return point[key]
    raise AssertionError(f"no time in ls --json's point: {point}")


def run_example(box, line, env=None, during=()):
    """Runs one documented command line as written, in the sandbox.

    What a reader supplies is supplied: a free port for 127.0.0.1:9090, and
    for --txid/--timestamp the TXID and time of a restore point that exists
    (the documented ones are examples). A restore or serve-replica runs as on
    a new machine (its output does not exist yet) unless it says
    --if-db-not-exists, --force or --dry-run. A command that serves until stopped
    (replicate without --exec, serve-replica) must do its job first (replicate:
    new objects in a replica after new commits; serve-replica: its database
    restored; with --http: /metrics answers; the `during` lines, documented
    right after it, e.g. `curl` of its endpoints, exit 0), then exit 0 on
    SIGTERM; `walship sync` must exit 0 while a replicate of its database
    serves; any other command must exit 0.

    Returns the name of a tool the line (or a `during` line) needs that is
    not installed here (jq, curl, sqlite3), without running it; the caller
    reports it as skipped once the rest has run."""
    for text in [line, *during]:
        for tool in re.findall(r"(?:^|\|)\s*([a-z][a-z0-9-]*)", text):
            if tool != "walship" and shutil.which(tool) is None:
                return tool
    port = free_port()
    line = line.replace("127.0.0.1:9090", f"127.0.0.1:{port}")
    words = [w[1:-1] if w[:1] in "\"'" else w for w in re.findall(r'"[^"]*"|\'[^\']*\'|\S+', line)]
    if "--txid" in words or "--timestamp" in words or "--point" in words:
        url = next(w for w in words if "://" in w)
        r = box.run(["walship", "ls", "--json", url], env=env)
        assert r.returncode == 0, f"ls of {url}: {r.stderr}"
        points = json.loads(r.stdout)
        assert len(points) >= 2, f"{line}: needs two restore points in {url}: {points}"
        oldest = points[-1]
        line = re.sub(r"--(txid|point) [0-9a-f]{16}", lambda m: f"--{m.group(1)} {oldest['txid']}", line)
        line = re.sub(r"--timestamp \S+", f"--timestamp {point_time(oldest)}", line)
    command = words[1] if len(words) > 1 and words[0] == "walship" else None  # None: another tool
    if command == "sync":
        # It asks a running replicate: one ships the database meanwhile.
        db = next(w for w in words[2:] if w.startswith("/"))
        print(f"run     {line}\n          while: walship replicate {db} file:///backups/app", flush=True)
        box.serve(["walship", "replicate", db, "file:///backups/app"], lambda: box.run(line, env=env).returncode == 0,
                  f"{line}: exit 0 while replicate ships {db}", env=env)
        return None
    fresh = not {"--if-db-not-exists", "--force", "--dry-run"} & set(words)
    if command == "restore" and fresh:
        remove_database(box.path(words[words.index("-o") + 1]))
    if command == "serve-replica" and "--config" not in words and fresh:
        remove_database(box.path(words[-1]))
    serving = command == "serve-replica" or (command == "replicate" and "--exec" not in words)
    print(f"run     {line}" + "".join(f"\n          while: {d}" for d in during), flush=True)
    if not serving:
        r = box.run(line, env=env)
        assert r.returncode == 0, f"{line!r} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        return None
    # New commits in every database a writer would be writing (not the
    # followers: serve-replica is their only writer), for replicate to ship.
    for dirpath, _, names in os.walk(box.root):
        for name in names:
            db = os.path.join(dirpath, name)
            if name.endswith(".db") and not os.path.exists(f"{db}-walship/follow") and has_table_t(db):
                add_rows(db, 3)
    if command == "replicate":
        suffixes = (".snap", ".delta")
    else:
        suffixes = (".db",)
    before = files_under(box.root, suffixes)

    remote = any(w.startswith(("s3://", "gs://", "sftp://")) for w in words)

    def ready():
        # A remote replica's objects are not in the sandbox: its endpoints and
        # the `during` lines say it works.
        if not remote and files_under(box.root, suffixes) <= before:
            return False
        if "--http" in words and not listening(port):
            return False
        if "--http" in words and http_get(f"http://127.0.0.1:{port}/metrics")[0] != 200:
            return False
        return all(box.run(d.replace("127.0.0.1:9090", f"127.0.0.1:{port}"), env=env).returncode == 0
                   for d in during)

    what = "new objects in its replica" if command == "replicate" else "its database restored"
    box.serve(words, ready, f"{line}: {what}", env=env)
    return None


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def remove_database(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    shutil.rmtree(path + "-walship", ignore_errors=True)
