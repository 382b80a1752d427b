"""Shared helpers for walship's integration and CLI tests.

Tests run the real binary ($WALSHIP) in throwaway directories that are always
removed. A test that needs a missing tool calls skip(), which exits 77 so CTest
counts it as skipped, never as passed.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

SOURCE = os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
WALSHIP = os.environ.get("WALSHIP") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "walship")
# The fully static binary scripts/build-static makes (curl on mbedTLS, the CA
# bundle compiled in): what users run.
STATIC = os.environ.get("WALSHIP_STATIC") or os.path.join(SOURCE, "build-static", "dist", "walship")
SKIP = 77


def skip(reason):
    print(f"SKIPPED: {reason}")
    sys.exit(SKIP)


def use_static_binary():
    """Points walship() at STATIC, so a test's TLS paths are the shipped
    binary's and not the development build's (Debian's OpenSSL libcurl);
    skips the whole test when scripts/build-static has not built it."""
    global WALSHIP
    if not os.access(STATIC, os.X_OK):
        skip(f"{STATIC} is not built (scripts/build-static)")
    WALSHIP = STATIC


def using_static_binary():
    return WALSHIP == STATIC


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"exit={self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def walship(*args, check=None, env=None, timeout=600, **kwargs):
    """Runs walship; with check=N asserts the exit code is N."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run([WALSHIP, *map(str, args)], capture_output=True, text=True, env=full_env,
                          timeout=timeout, **kwargs)
    result = Result(proc)
    if check is not None and result.code != check:
        raise AssertionError(f"walship {' '.join(map(str, args))}: expected exit {check}, got {result!r}")
    return result


def payload(n, size=1000):
    """Deterministic row content for transaction n, so a test can recompute
    exactly what a database holds after any number of transactions."""
    seed = hashlib.sha256(str(n).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def create_db(path, rows=0, row_size=1000, wal=True, page_size=4096):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={page_size}")
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    batch = 10000
    for start in range(1, rows + 1, batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t(id, payload) VALUES(?, ?)",
                       ((n, payload(n, row_size)) for n in range(start, min(start + batch, rows + 1))))
        db.execute("COMMIT")
    db.close()


def check_rows(path, last, row_size=1000, first=1):
    """Asserts the table holds exactly rows first..last with their payloads and
    that the database passes integrity_check."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        assert ok == "ok", f"{path}: integrity_check says {ok}"
        expected = first
        for n, data in db.execute("SELECT id, payload FROM t ORDER BY id"):
            assert n == expected, f"{path}: row {expected} missing (found {n})"
            assert bytes(data) == payload(n, row_size), f"{path}: row {n} has wrong content"
            expected += 1
        assert expected - 1 == last, f"{path}: rows end at {expected - 1}, expected {last}"
    finally:
        db.close()


def check_state(path, size=1000):
    """Asserts `path` is exactly the writer's state after some transaction n
    (integrity_check, rows 1..n with their payloads, meta.n == n); returns n."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        assert ok == "ok", f"{path}: integrity_check says {ok}"
        n = db.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
        expected = 1
        for i, data in db.execute("SELECT id, payload FROM t ORDER BY id"):
            assert i == expected, f"{path}: row {expected} missing (found {i})"
            assert bytes(data) == payload(i, size), f"{path}: row {i} has wrong content"
            expected += 1
        assert expected - 1 == n, f"{path}: torn transaction: rows end at {expected - 1} but meta says {n}"
        return n
    finally:
        db.close()


def max_id(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0]
    finally:
        db.close()


def checkpointed_bytes(path):
    """The database's bytes with every WAL frame checkpointed into the file."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "rb") as f:
        return f.read()


def make_db(path, rows=1500, noise=400_000):
    """create_db's rows 1..`rows` plus a table of `noise` random bytes: a
    snapshot of several hundred KiB even compressed, so a small part size or
    resumable threshold sends it in several pieces."""
    create_db(path, rows=rows)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE noise(b BLOB)")
    db.execute("INSERT INTO noise VALUES(?)", (random.Random(7).randbytes(noise),))
    db.close()


def round_trip(tmp, url, env, snapshots=3, verify_and_prune=False):
    """Every command against a remote replica `url`: snapshot (several times),
    ls, ls --json, restore latest and by --txid (restored bytes equal the
    source); with `verify_and_prune`, then verify, prune to the newest, and
    verify --full and restore what is left. Returns the first ls --json points."""
    src = f"{tmp}/a.db"
    make_db(src)
    for n in range(1, snapshots + 1):
        if n > 1:
            db = sqlite3.connect(src, isolation_level=None)
            db.execute("INSERT INTO noise VALUES(?)", (random.Random(n).randbytes(1000),))
            db.close()
        r = walship("snapshot", src, url, env=env, check=0)
        assert f"snapshot {n:016x}" in r.out, r
    table = walship("ls", "-v", url, env=env, check=0).out
    assert table.count("snapshot") == snapshots, table
    points = json.loads(walship("ls", url, "--json", env=env, check=0).out)
    assert [p["txid"] for p in points] == [f"{n:016x}" for n in range(snapshots, 0, -1)], points
    walship("restore", url, "-o", f"{tmp}/b.db", env=env, check=0)
    with open(f"{tmp}/b.db", "rb") as f:
        assert f.read() == checkpointed_bytes(src)
    check_rows(f"{tmp}/b.db", 1500)
    walship("restore", url, "-o", f"{tmp}/first.db", "--txid", f"{1:016x}", env=env, check=0)
    check_rows(f"{tmp}/first.db", 1500)
    if verify_and_prune:
        # verify proves every point; prune keeps the newest; that one still verifies and restores.
        walship("verify", url, env=env, check=0)
        walship("prune", "--keep-last", "1", url, env=env, check=0)
        kept = json.loads(walship("ls", url, "--json", env=env, check=0).out)
        assert [p["txid"] for p in kept] == [f"{snapshots:016x}"], kept
        walship("verify", "--full", url, env=env, check=0)
        walship("restore", url, "-o", f"{tmp}/pruned.db", env=env, check=0)
        with open(f"{tmp}/pruned.db", "rb") as f:
            assert f.read() == checkpointed_bytes(src)
    return points


def expect_one_error_line(result, code, pattern):
    """Asserts the exit code and that stderr has exactly one "walship:" error
    line, matching the regular expression `pattern`."""
    assert result.code == code, f"expected exit {code}: {result!r}"
    lines = [line for line in result.err.splitlines() if line.startswith("walship:")]
    assert len(lines) == 1, f"expected one error line: {result!r}"
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


def free_port():
    """A TCP port of 127.0.0.1 nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url):
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, **labels):
    """The value of the first sample of `name` in Prometheus text whose labels
    include `labels` (e.g. op="put")."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line.split("}")[0] for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in /metrics:\n{text}")


class TempDir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="walship-test-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def stop(proc, sig=signal.SIGTERM, timeout=60):
    """Signals a process and returns its exit code; fails if it is still
    running `timeout` seconds later (then kills it)."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"process {proc.args} did not stop within {timeout}s of signal {sig}")


def clean_log(code, log_path, bad):
    """The text of a stopped process's log, after checking it exited 0 and
    that none of the strings `bad` (errors it must not have hit) is in it."""
    text = open(log_path).read()
    assert code == 0, text
    for word in bad:
        assert word not in text, f"{word!r} in {log_path}:\n{text}"
    return text


def wait_for(predicate, what, timeout=60):
    """Polls `predicate` every 50 ms; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Skipped(Exception):
    """Raised by a test whose tool or permission is missing here: it counts as
    skipped, the others still run."""


def children_of(pid):
    """Every descendant of pid (from /proc), deepest first."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out = []

    def walk(p):
        for child in parents.get(p, []):
            walk(child)
            out.append(child)
    walk(pid)
    return out


def kill_left_running(before, test):
    """Kills the processes a test started and left running (a failed
    assertion skips its stops): the next test, and CTest, never wait for
    them."""
    for pid in set(children_of(os.getpid())) - before:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        if cmd:
            print(f"killed  {pid} left running by {test.__name__}: {cmd}")
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # a grandchild: its parent reaps it, or init


def run_tests(tests):
    """Runs test functions (each given a fresh temp dir); prints a summary line.
    Exits 1 if any failed, else SKIP if any was skipped (a run with a skipped
    part is not a pass: CTest shows it as skipped), else 0."""
    passed = failed = skipped = 0
    for test in tests:
        before = set(children_of(os.getpid()))
        with TempDir() as tmp:
            try:
                test(tmp)
                passed += 1
                print(f"ok      {test.__name__}")
            except Skipped as e:
                skipped += 1
                print(f"SKIPPED {test.__name__}: {e}")
            except Exception:
                failed += 1
                print(f"FAILED  {test.__name__}")
                traceback.print_exc()
            finally:
                kill_left_running(before, test)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    sys.exit(1 if failed else SKIP if skipped else 0)
