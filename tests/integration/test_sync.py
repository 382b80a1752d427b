"""`walship sync` and replicate's control socket: durable acknowledgements.

An app asks the replicate of its database, on DB-walship/control.sock (or
--control-socket, or walship.toml's control-socket), whether everything it
committed before the request is in every replica: "sync [TIMEOUT]" answered
"ok", "timeout ...", "fenced ..." or "error ...". `walship sync DB` exits 0,
1, 4 (2 for usage); replicate --http answers POST /sync?db=PATH too
(docs/DESIGN.md, "Control socket" and "Waiting for durability"). With
real processes and a sync interval far longer than the test waits, so that
only a sync can have made anything durable:

- kill -9 of an app that syncs after every 10th commit (alternately with
  `walship sync` and with packaging/examples/sync_client.py) and of
  replicate, at random moments, 30 rounds: every commit a sync
  acknowledged is in the replica's restore, every round;
- 200 clients at once are all answered ok, by few ships (walship_shipped_
  deltas_total); 200 more, each sent right after a commit of its own while
  the others wait, are all answered ok too;
- a store that went away (s3rver killed): `walship sync --timeout 2s`
  exits 1 within about the timeout, naming the cause, and POST /sync is
  504; a sync that waits through the outage is answered ok once the store
  is back, and the replica restores every row;
- as root: the socket is mode 0600 and owned by the database's owner; the
  user nobody cannot connect (EACCES) nor get ok from `walship sync`, and
  is answered "error" even through a socket opened to everyone (the peer's
  uid is checked); the database's owner can sync a replicate run by root;
- a path that exists and is not a socket (a file, a directory, at the
  default path or at --control-socket) and another replicate's live socket
  stop replicate's start with exit 2 and one line naming it, the path
  untouched and nothing written to the replica; --control-socket with
  --dir is a usage error; a stale socket (its replicate killed) is replaced;
- `walship sync` exit codes: 1 with no replicate (none ever, a stale
  socket), 2 for usage errors, silent 0 unless -v; a request line it does
  not understand is answered "error" (and "snapshot URL" still works);
  fenced: 4 (a paused writer taken over, asked while paused), with "fenced"
  on the socket, 409 on POST /sync, and the replica holding none of the
  paused writer's later commits;
- a waiter that asked right before SIGTERM is answered ok by the final
  ship, also one still queued in the listen backlog;
- POST /sync: 200 ok (the path as replicate was given it, or absolute),
  404 for a database it does not replicate, 400 without db or with a bad
  timeout; walship.toml's control-socket;
- the client examples packaging/examples/sync_client.py and
  sync_client.go (go run, and go build for the exit codes, which go run
  does not pass on): 0 durable, 1 no replicate, 2 usage, 4 fenced. Without
  go, the Go case is skipped.

  python3 test_sync.py [NAME...]    runs the tests whose names contain a NAME
"""
import http.client
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
sys.path.insert(0, HERE)
import walship_test  # noqa: E402
from walship_test import (SOURCE, WALSHIP, Skipped, check_state, expect_one_error_line, free_port,  # noqa: E402
                          metric, payload, run_tests, walship)
from test_replicate import init_db, source_n, write  # noqa: E402

EXAMPLES = os.path.join(SOURCE, "packaging", "examples")
PY_CLIENT = os.path.join(EXAMPLES, "sync_client.py")
GO_CLIENT = os.path.join(EXAMPLES, "sync_client.go")
# Far longer than any test waits: what is durable, a sync made durable.
LONG_INTERVAL = "10m"
FENCED = 4
NOBODY = 65534
CONNECTED = "03"  # SS_CONNECTED in /proc/net/unix

# No profile or agent of the person running the tests may take part.
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SSH_AUTH_SOCK"):
    os.environ.pop(name, None)


def wait_for(predicate, what, timeout=60):
    walship_test.wait_for(predicate, what, timeout)


def stop(proc, sig=signal.SIGTERM, timeout=60):
    return walship_test.stop(proc, sig, timeout)


# ---------------------------------------------------------------------------
# Helpers.


def sock_of(db):
    return f"{db}-walship/control.sock"


def start(tmp, name, *args, env=None, cwd=None):
    """walship -v replicate ARGS; its log is tmp/name.log."""
    return subprocess.Popen([WALSHIP, "-v", "replicate", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=open(f"{tmp}/{name}.log", "a"), env={**os.environ, **(env or {})}, cwd=cwd)


def log_of(tmp, name):
    with open(f"{tmp}/{name}.log") as f:
        return f.read()


def kill(*procs):
    """Kills what a scenario left running (a stopped process is resumed first)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


def connect(path, timeout=60):
    """A blocking Unix socket connected to `path`; a full listen backlog
    makes connect() wait (SO_SNDTIMEO bounds it), not fail."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", timeout, 0))
    try:
        conn.connect(path)
    except BaseException:
        conn.close()
        raise
    conn.settimeout(timeout)
    return conn


def read_answer(conn):
    """The answer line without its newline ("" when the server closed, or
    reset the connection, first)."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass  # closed with the request unread: no answer
    finally:
        conn.close()
    return data.decode(errors="replace").rstrip("\n")


def ask(path, request="sync 60s", timeout=90):
    """Sends one request line on replicate's socket and returns the answer line."""
    conn = connect(path, timeout)
    try:
        conn.sendall((request + "\n").encode())
    except BrokenPipeError:
        pass  # replicate answered and closed before reading it all: the answer is still there
    return read_answer(conn)


def answers_ok(path):
    """A predicate: replicate listens on `path` and answers a sync ok."""
    def check():
        try:
            return ask(path, "sync 30s") == "ok"
        except OSError:
            return False
    return check


def wait_ready(proc, path, what, tmp=None, name=None):
    """Waits until replicate answers a sync on `path`; fails at once, with
    its log, when it exited instead."""
    ok = answers_ok(path)

    def check():
        if proc.poll() is not None:
            log = log_of(tmp, name)[-3000:] if tmp else ""
            raise AssertionError(f"{what} exited {proc.returncode} before it answered on {path}:\n{log}")
        return ok()
    wait_for(check, f"{what} to answer a sync on {path}", timeout=120)


def restored_n(tmp, url, env=None, size=1000):
    """The writer's state n of the replica's latest point (a whole
    transaction of rows of `size` bytes, checked)."""
    out = f"{tmp}/restored.db"
    for path in (out, out + "-wal", out + "-shm"):
        if os.path.exists(path):
            os.unlink(path)
    walship("restore", url, "-o", out, check=0, env=env)
    return check_state(out, size)


def http_post(port, target, timeout=90):
    """(status, body) of a POST with an empty body."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{target}", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port):
    status, text = walship_test.http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return text


def unix_sockets(pid, state=None):
    """Inodes of pid's Unix sockets (in `state` of /proc/net/unix when given)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    found = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[6] in inodes and (state is None or fields[5] == state):
                found.add(fields[6])
    return found


def connected(proc):
    """A predicate: `proc` (a client) holds a connected Unix socket, or exited."""
    return lambda: proc.poll() is not None or bool(unix_sockets(proc.pid, CONNECTED))


def example_env(tmp):
    """Go with no network, no module download, caches in the test's dir."""
    return {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOCACHE": f"{tmp}/go/cache",
            "GOPATH": f"{tmp}/go/path", "GO111MODULE": "auto", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def build_go_client(tmp):
    """The Go example built into tmp (go run does not pass the exit code on)."""
    if shutil.which("go") is None:
        raise Skipped("go is not installed (scripts/setup installs golang-go)")
    out = f"{tmp}/sync_client"
    r = subprocess.run(["go", "build", "-o", out, GO_CLIENT], capture_output=True, text=True, env=example_env(tmp),
                       cwd=tmp, timeout=600)
    assert r.returncode == 0, f"go build {GO_CLIENT}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return out


def run_client(args, timeout=120, env=None):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    return walship_test.Result(proc)


# ---------------------------------------------------------------------------
# The app of the kill -9 test, run as `test_sync.py writer DB ACKS`: commits
# numbered transactions (test_replicate's write()), and after every 10th asks
# for a sync until one is answered ok (odd batches with `walship sync`, even
# ones with the Python example), then appends the last commit's n to ACKS.


def writer_main(db, acks):
    sys.path.insert(0, EXAMPLES)
    from sync_client import NotDurable, sync
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    n = conn.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
    out = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    batch = 0
    while True:
        for _ in range(10):
            n += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t(id, payload) VALUES(?, ?)", (n, payload(n, 200)))
            conn.execute("UPDATE meta SET n = ? WHERE k = 1", (n,))
            conn.execute("COMMIT")
        batch += 1
        while True:
            if batch % 2:
                ok = subprocess.run([WALSHIP, "sync", "--timeout", "10s", db], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode == 0
            else:
                try:
                    sync(db, 10)
                    ok = True
                except NotDurable:
                    ok = False
            if ok:
                os.write(out, f"{n}\n".encode())  # no buffer: a kill -9 loses no ack line
                break
            time.sleep(0.05)  # no replicate yet (or it was killed): ask again


def acked(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(line) for line in f.read().split("\n") if line]  # a torn last line cannot exist: one write


# ---------------------------------------------------------------------------
# Tests.


ROUNDS = 30


def test_every_acknowledged_commit_survives_kill_9_of_app_and_replicate(tmp):
    db, url, acks = f"{tmp}/app.db", f"file://{tmp}/replica", f"{tmp}/acks"
    init_db(db)
    rng = random.Random(int(os.environ.get("WALSHIP_SYNC_SEED", "20261207")))
    began = time.monotonic()
    acked_rounds = 0
    for round_ in range(ROUNDS):
        before = len(acked(acks))
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
        app = subprocess.Popen([sys.executable, os.path.abspath(__file__), "writer", db, acks],
                               start_new_session=True)
        try:
            if rng.random() < 0.25:
                # Anywhere, replicate's start included.
                time.sleep(rng.uniform(0.0, 0.6))
            else:
                # Once the app had a sync answered in this round (replicate
                # is up and shipping), a little later.
                def progressed():
                    if rep.poll() is not None:
                        raise AssertionError(f"replicate exited {rep.returncode} in round {round_}:\n"
                                             f"{log_of(tmp, 'replicate')[-3000:]}")
                    return len(acked(acks)) > before
                wait_for(progressed, f"an acknowledged sync in round {round_}", timeout=120)
                time.sleep(rng.uniform(0.0, 0.8))
            first, second = (rep, app) if rng.random() < 0.5 else (app, rep)
            for proc in (first, second):
                if proc is app:
                    os.killpg(app.pid, signal.SIGKILL)
                else:
                    rep.kill()
                proc.wait()
                time.sleep(rng.uniform(0.0, 0.15))
        finally:
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait()
            kill(rep)
        got = acked(acks)
        acked_rounds += len(got) > before
        n = restored_n(tmp, url, size=200)
        assert got == sorted(got), got
        if got:
            assert n >= got[-1], (f"round {round_}: the replica restores to commit {n}, but a sync acknowledged "
                                  f"commit {got[-1]}")
        assert n <= source_n(db), (n, source_n(db))
    elapsed = time.monotonic() - began
    got = acked(acks)
    print(f"        {ROUNDS} rounds in {elapsed:.1f} s: {len(got)} syncs acknowledged in {acked_rounds} rounds, "
          f"last acknowledged commit {got[-1] if got else None}, the app at {source_n(db)}")
    # Three rounds in four wait for an acknowledged sync: the test is not vacuous.
    assert acked_rounds >= ROUNDS // 2, acked_rounds


def test_200_waiters_at_once_are_all_answered_ok_by_few_ships(tmp):
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    port = free_port()
    rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, "--no-compaction", "--http", f"127.0.0.1:{port}",
                db, url)
    try:
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        n = write(db, 20, size=200)
        deltas = metric(scrape(port), "walship_shipped_deltas_total", db=db)
        l0 = len(os.listdir(f"{tmp}/replica/deltas/L0")) if os.path.isdir(f"{tmp}/replica/deltas/L0") else 0

        # 200 at once: each connects and sends as soon as the barrier opens.
        barrier = threading.Barrier(200)
        answers = [None] * 200

        def waiter(i):
            try:
                barrier.wait(timeout=60)
                # Half with replicate's default timeout (5 s), half with their own.
                answers[i] = ask(sock_of(db), "sync" if i % 2 else "sync 60s")
            except Exception as e:  # noqa: BLE001 - reported below
                answers[i] = f"exception {e!r}"
        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(200)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        took = time.monotonic() - t0
        bad = [(i, a) for i, a in enumerate(answers) if a != "ok"]
        assert not bad, f"{len(bad)} of 200 waiters not answered ok: {bad[:10]}"
        shipped = metric(scrape(port), "walship_shipped_deltas_total", db=db) - deltas
        new_l0 = len(os.listdir(f"{tmp}/replica/deltas/L0")) - l0
        print(f"        200 waiters answered ok in {took:.2f} s by {shipped:.0f} deltas ({new_l0} new L0 objects)")
        assert 1 <= shipped <= 10, f"200 waiters at once made {shipped} deltas"
        assert new_l0 == shipped, (new_l0, shipped)
        assert restored_n(tmp, url, size=200) == n

        # 200 more, each asking right after a commit of its own while the
        # earlier ones still wait: each is answered ok, and the replica
        # ends with every commit.
        answers = [None] * 200
        released = [threading.Event() for _ in range(200)]

        def committed_waiter(i):
            try:
                assert released[i].wait(timeout=120)
                answers[i] = ask(sock_of(db), "sync 60s")
            except Exception as e:  # noqa: BLE001 - reported below
                answers[i] = f"exception {e!r}"
        threads = [threading.Thread(target=committed_waiter, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        deltas = metric(scrape(port), "walship_shipped_deltas_total", db=db)
        t0 = time.monotonic()
        for i in range(200):
            n = write(db, 1, size=200)
            released[i].set()
        for t in threads:
            t.join(timeout=180)
        took = time.monotonic() - t0
        bad = [(i, a) for i, a in enumerate(answers) if a != "ok"]
        assert not bad, f"{len(bad)} of 200 waiters not answered ok: {bad[:10]}"
        shipped = metric(scrape(port), "walship_shipped_deltas_total", db=db) - deltas
        print(f"        200 waiters, each after a commit of its own: answered ok in {took:.2f} s by {shipped:.0f} "
              f"deltas")
        assert shipped <= 200, shipped
        assert stop(rep) == 0
    finally:
        kill(rep)
    assert restored_n(tmp, url, size=200) == n


def s3_backend(tmp):
    """s3rver in tmp, or Skipped; (server, env for walship)."""
    from s3_test_server import ACCESS_KEY_ID, S3RVER, SECRET_ACCESS_KEY, S3rver
    if shutil.which("node") is None:
        raise Skipped("node is not installed (scripts/setup installs it)")
    if not os.path.exists(S3RVER):
        raise Skipped(f"s3rver is not installed in {os.path.dirname(os.path.dirname(S3RVER))} (scripts/setup)")
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_SESSION_TOKEN": "",
           "AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
    return S3rver(f"{tmp}/s3"), env


def test_a_store_that_went_away_times_out_then_syncs_once_back(tmp):
    server, env = s3_backend(tmp)
    db = f"{tmp}/app.db"
    init_db(db)
    url = f"s3://walship/app?endpoint={server.endpoint}"
    port = free_port()
    rep = waiter = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, "--http", f"127.0.0.1:{port}", db, url,
                    env=env)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        write(db, 10)
        walship("sync", db, check=0)
        server.kill()  # connections to the store are refused from now on
        n = write(db, 10)

        t0 = time.monotonic()
        r = walship("sync", "--timeout", "2s", db, timeout=120)
        took = time.monotonic() - t0
        print(f"        walship sync --timeout 2s with the store down: exit {r.code} after {took:.2f} s: "
              f"{r.err.strip()}")
        expect_one_error_line(r, 1, r"(?i)tim(ed |e)out|timed out|not durable")
        assert r.out == "", r
        # The line says why: the store's error, not just that time ran out.
        assert any(word in r.err.lower() for word in ("connect", "refused", "unreachable", "storage", "s3")), r
        assert 1.9 <= took < 2 + 10, f"walship sync --timeout 2s took {took:.2f} s"

        t0 = time.monotonic()
        status, body = http_post(port, f"/sync?db={db}&timeout=1s")
        took = time.monotonic() - t0
        print(f"        POST /sync timeout=1s with the store down: {status} after {took:.2f} s: {body.strip()}")
        assert status == 504, (status, body)
        assert 0.9 <= took < 1 + 10, took

        # A sync that waits through the outage is answered once the store is back.
        waiter = subprocess.Popen([WALSHIP, "sync", "--timeout", "120s", db], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        wait_for(connected(waiter), "walship sync to connect")
        time.sleep(1)
        assert waiter.poll() is None, waiter.communicate()
        server.start()  # the same port and directory
        out, err = waiter.communicate(timeout=150)
        assert waiter.returncode == 0, f"exit {waiter.returncode}: {out}{err}\n{log_of(tmp, 'replicate')[-3000:]}"
        assert restored_n(tmp, url, env) == n
        n = write(db, 5)
        walship("sync", "--timeout", "60s", db, check=0)
        assert restored_n(tmp, url, env) == n
        assert stop(rep) == 0
    finally:
        kill(rep, waiter)
        server.close()


def test_only_the_owner_and_root_can_sync(tmp):
    if os.geteuid() != 0:
        raise Skipped("needs root: the user nobody is the other user")
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    os.chmod(tmp, 0o755)
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    os.chmod(db, 0o644)
    connect_as_nobody = [*as_nobody, sys.executable, "-c", """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect failed:", e.errno)
    sys.exit(0)
try:
    s.sendall(b"sync 30s\\n")
except BrokenPipeError:
    pass  # closed at once: its answer may still be there to read
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("answer:", data.decode().strip())
"""]
    rep = other = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        st = os.stat(sock_of(db))
        assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600, f"{sock_of(db)} has mode {oct(stat.S_IMODE(st.st_mode))}"
        assert st.st_uid == os.stat(db).st_uid == 0, st

        n = write(db, 5)
        r = run_client([*as_nobody, WALSHIP, "sync", "--timeout", "5s", db])
        print(f"        walship sync as nobody: exit {r.code}: {r.err.strip()}")
        expect_one_error_line(r, 1, ".")
        r = run_client(connect_as_nobody + [sock_of(db)])
        assert r.out.strip() == "connect failed: 13", r  # EACCES
        r = run_client([*as_nobody, sys.executable, PY_CLIENT, db])
        assert r.code == 1, r
        walship("sync", db, check=0)  # root may
        assert restored_n(tmp, url) == n

        # The peer's uid is checked too: through a socket opened to everyone
        # (in a folder everyone may enter), nobody is answered "error".
        os.makedirs(f"{tmp}/open", mode=0o755)
        other_db, open_sock = f"{tmp}/other.db", f"{tmp}/open/control.sock"
        init_db(other_db)
        other = start(tmp, "other", "--sync-interval", LONG_INTERVAL, "--control-socket", open_sock, other_db,
                      f"file://{tmp}/other-replica")
        wait_ready(other, open_sock, "the second replicate", tmp, "other")
        assert stat.S_IMODE(os.stat(open_sock).st_mode) == 0o600
        os.chmod(open_sock, 0o666)
        write(other_db, 5)
        r = run_client(connect_as_nobody + [open_sock])
        print(f"        nobody through a socket of mode 0666: {r.out.strip()}")
        assert r.out.startswith("answer: error "), r
        r = run_client([*as_nobody, WALSHIP, "sync", "--control-socket", open_sock, other_db])
        expect_one_error_line(r, 1, ".")
        assert stop(other) == 0
        assert stop(rep) == 0
    finally:
        kill(rep, other)


def test_the_databases_owner_can_sync_a_replicate_run_by_root(tmp):
    if os.geteuid() != 0:
        raise Skipped("needs root to run replicate for another user's database")
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    os.chmod(tmp, 0o755)
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    os.chown(db, NOBODY, NOBODY)
    rep = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        st = os.stat(sock_of(db))
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == NOBODY, \
            f"{sock_of(db)}: mode {oct(stat.S_IMODE(st.st_mode))} uid {st.st_uid}, expected 0600 and {NOBODY}"
        n = write(db, 5)
        r = run_client([*as_nobody, WALSHIP, "sync", "--timeout", "30s", db])
        assert r.code == 0, f"the database's owner could not sync: {r!r}"
        assert restored_n(tmp, url) == n
        n = write(db, 5)
        r = run_client([*as_nobody, sys.executable, PY_CLIENT, "--timeout", "30", db])
        assert r.code == 0, r
        assert restored_n(tmp, url) == n
        assert stop(rep) == 0
    finally:
        kill(rep)


def nothing_in(folder):
    """True when a file:// replica folder holds no object (or is not there)."""
    return not any(files for _, _, files in os.walk(folder))


def replicate_run(db, url, *args):
    """A replicate start that must end by itself (a refusal): its Result."""
    proc = subprocess.run([WALSHIP, "replicate", "--sync-interval", LONG_INTERVAL, *args, db, url],
                          capture_output=True, text=True, timeout=60)
    return walship_test.Result(proc)


def test_a_path_that_is_not_a_socket_stops_the_start(tmp):
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    # A regular file given with --control-socket.
    regular = f"{tmp}/precious.txt"
    with open(regular, "w") as f:
        f.write("precious\n")
    r = replicate_run(db, url, "--control-socket", regular)
    print(f"        a regular file: exit {r.code}: {r.err.strip().splitlines()[-1] if r.err.strip() else ''}")
    expect_one_error_line(r, 2, re.escape(regular))
    assert open(regular).read() == "precious\n" and stat.S_ISREG(os.stat(regular).st_mode)
    assert nothing_in(f"{tmp}/replica"), "a refused start wrote to the replica"

    # A directory.
    folder = f"{tmp}/a-folder"
    os.mkdir(folder)
    with open(f"{folder}/keep", "w") as f:
        f.write("keep\n")
    r = replicate_run(db, url, "--control-socket", folder)
    expect_one_error_line(r, 2, re.escape(folder))
    assert os.path.isdir(folder) and open(f"{folder}/keep").read() == "keep\n"
    assert nothing_in(f"{tmp}/replica"), "a refused start wrote to the replica"

    # A regular file at the default path.
    os.makedirs(f"{db}-walship", exist_ok=True)
    with open(sock_of(db), "w") as f:
        f.write("not a socket\n")
    r = replicate_run(db, url)
    expect_one_error_line(r, 2, re.escape(sock_of(db)))
    assert open(sock_of(db)).read() == "not a socket\n"
    assert nothing_in(f"{tmp}/replica"), "a refused start wrote to the replica"
    os.unlink(sock_of(db))

    # --control-socket is for one database: not with --dir.
    os.mkdir(f"{tmp}/dir")
    r = walship_test.Result(subprocess.run(
        [WALSHIP, "replicate", "--control-socket", f"{tmp}/x.sock", "--dir", f"{tmp}/dir", f"file://{tmp}/many"],
        capture_output=True, text=True, timeout=60))
    expect_one_error_line(r, 2, "control-socket")


def test_a_live_socket_stops_the_start_and_a_stale_one_is_replaced(tmp):
    a, b = f"{tmp}/a.db", f"{tmp}/b.db"
    init_db(a)
    init_db(b)
    shared = f"{tmp}/shared.sock"
    first = None
    try:
        first = start(tmp, "first", "--sync-interval", LONG_INTERVAL, "--control-socket", shared, a,
                      f"file://{tmp}/ra")
        wait_ready(first, shared, "the first replicate", tmp, "first")
        # Another replicate (of another database) on the same socket path.
        r = replicate_run(b, f"file://{tmp}/rb", "--control-socket", shared)
        expect_one_error_line(r, 2, re.escape(shared))
        assert nothing_in(f"{tmp}/rb"), "a refused start wrote to the replica"
        # The first still answers on it.
        n = write(a, 5)
        walship("sync", "--control-socket", shared, a, check=0)
        assert restored_n(tmp, f"file://{tmp}/ra") == n
        first.kill()
        first.wait()
        # Its socket file is left behind, with nobody listening.
        assert stat.S_ISSOCK(os.stat(shared).st_mode)
        r = walship("sync", "--control-socket", shared, a)
        expect_one_error_line(r, 1, re.escape(a))
        first = start(tmp, "first", "--sync-interval", LONG_INTERVAL, "--control-socket", shared, a,
                      f"file://{tmp}/ra")
        wait_ready(first, shared, "the restarted replicate", tmp, "first")
        n = write(a, 5)
        walship("sync", "--control-socket", shared, a, check=0)
        assert restored_n(tmp, f"file://{tmp}/ra") == n
        assert stop(first) == 0
    finally:
        kill(first)


def test_sync_exit_codes_and_output(tmp):
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    # No replicate ever ran: no DB-walship at all.
    r = walship("sync", db)
    expect_one_error_line(r, 1, re.escape(db))
    assert r.out == "", r
    # A database that does not exist: a wrong path, a usage error (2), one
    # line naming it.
    r = walship("sync", f"{tmp}/nothing.db")
    expect_one_error_line(r, 2, re.escape(f"{tmp}/nothing.db"))
    # Usage errors.
    for args in (["--timeout", "banana", db], ["--timeout", "5x", db], ["--timeout", "1y", db], ["--no-such-flag", db],
                 []):
        r = walship("sync", *args)
        assert r.code == 2, f"walship sync {' '.join(args)}: {r!r}"
        assert r.out == "", r
    rep = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        n = write(db, 5)
        r = walship("sync", db, check=0)
        assert r.out == "" and r.err == "", f"walship sync printed something without -v: {r!r}"
        assert restored_n(tmp, url) == n
        n = write(db, 5)
        r = walship("sync", "-v", "--timeout", "1500ms", db, check=0)
        assert r.out or r.err, "walship sync -v said nothing"
        assert restored_n(tmp, url) == n
        # The older request is still answered.
        answer = ask(sock_of(db), f"snapshot {url}")
        assert answer.startswith("ok "), answer
        # A request replicate does not understand: one error line, and it goes on.
        for bad in ("sync banana", "hello", "sync 5s extra"):
            answer = ask(sock_of(db), bad)
            assert answer.startswith("error "), (bad, answer)
        n = write(db, 5)
        assert ask(sock_of(db), "sync") == "ok"
        assert restored_n(tmp, url) == n
        # Killed: the socket file stays, nobody listens.
        rep.kill()
        rep.wait()
        assert os.path.exists(sock_of(db))
        r = walship("sync", db)
        expect_one_error_line(r, 1, re.escape(db))
    finally:
        kill(rep)


class Fenced:
    """Writer A (3 s lease, --http, long sync interval) replicates a.db,
    then is paused (SIGSTOP) and B, restored from the replica, takes it over
    (--take-over). Commits A's app makes meanwhile wait for A. `resume()`
    lets A go on; A must then find itself fenced and exit 4."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.a, self.b, self.url = f"{tmp}/a.db", f"{tmp}/b.db", f"file://{tmp}/replica"
        self.port = free_port()
        self.old = self.new = None

    def __enter__(self):
        init_db(self.a)
        write(self.a, 5)
        self.old = start(self.tmp, "A", "--lease-ttl", "3s", "--sync-interval", LONG_INTERVAL, "--http",
                         f"127.0.0.1:{self.port}", self.a, self.url)
        wait_ready(self.old, sock_of(self.a), "replicate A", self.tmp, "A")
        self.base = write(self.a, 5)
        walship("sync", self.a, check=0)
        self.old.send_signal(signal.SIGSTOP)
        walship("restore", self.url, "-o", self.b, check=0)
        self.new = start(self.tmp, "B", "--lease-ttl", "3s", "--take-over", "--sync-interval", LONG_INTERVAL,
                         self.b, self.url)
        wait_ready(self.new, sock_of(self.b), "replicate B", self.tmp, "B")
        assert "fenced off the previous writer" in log_of(self.tmp, "B"), log_of(self.tmp, "B")
        self.b_n = write(self.b, 3, size=700)
        walship("sync", self.b, check=0)
        write(self.a, 5)  # A's app writes on: A cannot ship it any more
        return self

    def resume(self):
        self.old.send_signal(signal.SIGCONT)

    def finish(self):
        code = self.old.wait(timeout=60)
        assert code == FENCED, f"A exited {code}:\n{log_of(self.tmp, 'A')[-3000:]}"
        assert stop(self.new) == 0
        # The replica is B's: none of A's commits after the takeover.
        out = f"{self.tmp}/final.db"
        walship("restore", self.url, "-o", out, check=0)
        conn = sqlite3.connect(out)
        sizes = [len(p) for (p,) in conn.execute("SELECT payload FROM t ORDER BY id")]
        conn.close()
        assert sizes == [1000] * self.base + [700] * 3, sizes

    def __exit__(self, *exc):
        kill(self.old, self.new)


def test_a_fenced_replicate_answers_fenced_and_sync_exits_4(tmp):
    with Fenced(tmp) as f:
        # Every kind of client asks A while it is paused.
        raw = {}
        sent = threading.Event()

        def raw_client():
            try:
                conn = connect(sock_of(f.a), 120)
                conn.sendall(b"sync 60s\n")
                sent.set()
                raw["answer"] = read_answer(conn)
            except Exception as e:  # noqa: BLE001 - reported below
                raw["answer"] = f"exception {e!r}"
                sent.set()
        posted_answer = {}
        posted = threading.Event()

        def http_client():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=120)
                conn.request("POST", f"/sync?db={f.a}&timeout=60s")
                posted.set()
                response = conn.getresponse()
                posted_answer["answer"] = (response.status, response.read().decode())
            except Exception as e:  # noqa: BLE001 - reported below
                posted_answer["answer"] = f"exception {e!r}"
                posted.set()
        threads = [threading.Thread(target=raw_client), threading.Thread(target=http_client)]
        for t in threads:
            t.start()
        cli = subprocess.Popen([WALSHIP, "sync", "--timeout", "60s", f.a], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        example = subprocess.Popen([sys.executable, PY_CLIENT, "--timeout", "60", f.a], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        for proc in (cli, example):
            wait_for(connected(proc), f"{proc.args[:2]} to connect")
        assert sent.wait(60) and posted.wait(60)
        f.resume()
        for t in threads:
            t.join(timeout=120)
        out, err = cli.communicate(timeout=120)
        r = walship_test.Result(subprocess.CompletedProcess(cli.args, cli.returncode, out, err))
        print(f"        socket: {raw['answer']!r}; POST /sync: {posted_answer['answer']!r}; "
              f"walship sync: exit {r.code}: {err.strip()}")
        assert raw["answer"].startswith("fenced "), raw
        expect_one_error_line(r, FENCED, ".")
        out, err = example.communicate(timeout=120)
        assert example.returncode == FENCED, f"sync_client.py: exit {example.returncode}: {out}{err}"
        assert posted_answer["answer"][0] == 409, posted_answer
        f.finish()


def test_a_waiter_that_asked_right_before_sigterm_gets_ok(tmp):
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    rep = None
    try:
        for delay in (0.0, 0.0, 0.002, 0.01, 0.05):
            rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
            wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
            n = write(db, 50, size=3000)
            conn = connect(sock_of(db))
            conn.sendall(b"sync 60s\n")
            time.sleep(delay)
            rep.send_signal(signal.SIGTERM)
            answer = read_answer(conn)
            assert answer == "ok", f"SIGTERM {delay * 1000:.0f} ms after the request: {answer!r}"
            assert rep.wait(timeout=60) == 0, log_of(tmp, "replicate")[-3000:]
            assert restored_n(tmp, url, size=3000) == n
    finally:
        kill(rep)


def test_a_waiter_queued_before_sigterm_gets_ok(tmp):
    """Connected (in the listen backlog) and its request sent while replicate
    was paused, then SIGTERM, then resumed: still a waiter of the final ship."""
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    rep = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        n = write(db, 20)
        rep.send_signal(signal.SIGSTOP)
        conn = connect(sock_of(db))
        conn.sendall(b"sync 60s\n")
        rep.send_signal(signal.SIGTERM)
        rep.send_signal(signal.SIGCONT)
        answer = read_answer(conn)
        assert answer == "ok", f"a waiter queued before SIGTERM was answered {answer!r}"
        assert rep.wait(timeout=60) == 0, log_of(tmp, "replicate")[-3000:]
        assert restored_n(tmp, url) == n
    finally:
        kill(rep)


def test_post_sync(tmp):
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    port = free_port()
    rep = None
    try:
        # Given as a relative path: both it and the absolute path name it.
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, "--http", f"127.0.0.1:{port}", "app.db", url,
                    cwd=tmp)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        for name in ("app.db", db):
            n = write(db, 5)
            status, body = http_post(port, f"/sync?db={urllib.request.quote(name)}&timeout=30s")
            assert (status, body.strip()) == (200, "ok"), (name, status, body)
            assert restored_n(tmp, url) == n
        n = write(db, 5)
        status, body = http_post(port, f"/sync?db={urllib.request.quote(db)}")  # the default timeout
        assert (status, body.strip()) == (200, "ok"), (status, body)
        assert restored_n(tmp, url) == n
        for target, want in ((f"/sync?db={tmp}/other.db", 404), ("/sync?db=/nonexistent/app.db", 404),
                             ("/sync", 400), ("/sync?timeout=5s", 400), (f"/sync?db={db}&timeout=banana", 400)):
            status, body = http_post(port, target)
            assert status == want, f"POST {target}: {status} {body!r}, expected {want}"
        assert stop(rep) == 0
    finally:
        kill(rep)


def test_control_socket_from_walship_toml(tmp):
    db, url, sock = f"{tmp}/app.db", f"file://{tmp}/replica", f"{tmp}/app.sock"
    init_db(db)
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write(f'[defaults]\nsync-interval = "{LONG_INTERVAL}"\n\n'
                f'[[databases]]\npath = "{db}"\nreplicas = ["{url}"]\ncontrol-socket = "{sock}"\n')
    rep = None
    try:
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", "--config", f"{tmp}/walship.toml"],
                               stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/replicate.log", "w"))
        wait_ready(rep, sock, "replicate --config", tmp, "replicate")
        assert not os.path.exists(sock_of(db)), "replicate listens at the default path too"
        n = write(db, 5)
        walship("sync", "--control-socket", sock, db, check=0)
        assert restored_n(tmp, url) == n
        assert stop(rep) == 0
    finally:
        kill(rep)


def test_python_example(tmp):
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    r = run_client([sys.executable, PY_CLIENT, db])
    assert r.code == 1 and db in r.err, r
    r = run_client([sys.executable, PY_CLIENT, "--timeout", "banana", db])
    assert r.code == 2, r
    rep = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, "--control-socket", f"{tmp}/c.sock", db, url)
        wait_ready(rep, f"{tmp}/c.sock", "replicate", tmp, "replicate")
        n = write(db, 5)
        r = run_client([sys.executable, PY_CLIENT, "--control-socket", f"{tmp}/c.sock", "--timeout", "2.5", db])
        assert r.code == 0 and r.out == "" and r.err == "", r
        assert restored_n(tmp, url) == n
        # The function, as an app calls it.
        sys.path.insert(0, EXAMPLES)
        try:
            import sync_client
        finally:
            sys.path.remove(EXAMPLES)
        n = write(db, 5)
        assert sync_client.sync(db, timeout=10, socket_path=f"{tmp}/c.sock") is None
        assert restored_n(tmp, url) == n
        try:
            sync_client.sync(db, timeout=1)  # the default path: nobody there
            raise AssertionError("sync() of a database no replicate listens for returned")
        except sync_client.NotDurable as e:
            assert e.kind == "unreachable", e
        assert stop(rep) == 0
    finally:
        kill(rep)


def test_go_example(tmp):
    binary = build_go_client(tmp)  # Skipped without go
    env = example_env(tmp)
    db, url = f"{tmp}/app.db", f"file://{tmp}/replica"
    init_db(db)
    r = run_client([binary, db])
    assert r.code == 1 and db in r.err, r
    r = run_client([binary, "--timeout", "banana", db])
    assert r.code == 2, r
    rep = None
    try:
        rep = start(tmp, "replicate", "--sync-interval", LONG_INTERVAL, db, url)
        wait_ready(rep, sock_of(db), "replicate", tmp, "replicate")
        n = write(db, 5)
        r = run_client(["go", "run", GO_CLIENT, "-timeout", "30s", db], timeout=600, env=env)
        assert r.code == 0 and r.out == "" and r.err == "", r
        assert restored_n(tmp, url) == n
        n = write(db, 5)
        r = run_client([binary, "--timeout", "1500ms", db])
        assert r.code == 0, r
        assert restored_n(tmp, url) == n
        assert stop(rep) == 0
    finally:
        kill(rep)
    os.mkdir(f"{tmp}/fenced")
    with Fenced(f"{tmp}/fenced") as f:
        client = subprocess.Popen([binary, "-timeout", "60s", f.a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        wait_for(connected(client), "the Go client to connect")
        f.resume()
        out, err = client.communicate(timeout=120)
        assert client.returncode == FENCED, f"sync_client.go: exit {client.returncode}: {out}{err}"
        f.finish()


TESTS = [test_sync_exit_codes_and_output,
         test_every_acknowledged_commit_survives_kill_9_of_app_and_replicate,
         test_200_waiters_at_once_are_all_answered_ok_by_few_ships,
         test_a_store_that_went_away_times_out_then_syncs_once_back,
         test_only_the_owner_and_root_can_sync,
         test_the_databases_owner_can_sync_a_replicate_run_by_root,
         test_a_path_that_is_not_a_socket_stops_the_start,
         test_a_live_socket_stops_the_start_and_a_stale_one_is_replaced,
         test_a_fenced_replicate_answers_fenced_and_sync_exits_4,
         test_a_waiter_that_asked_right_before_sigterm_gets_ok,
         test_a_waiter_queued_before_sigterm_gets_ok,
         test_post_sync,
         test_control_socket_from_walship_toml,
         test_python_example,
         test_go_example]


if __name__ == "__main__":
    if sys.argv[1:2] == ["writer"]:
        writer_main(sys.argv[2], sys.argv[3])
    else:
        names = sys.argv[1:]
        run_tests([t for t in TESTS if not names or any(n in t.__name__ for n in names)])
