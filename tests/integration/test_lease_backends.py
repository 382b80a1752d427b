"""One writer per replica on the remote backends whose create-if-absent is
not S3's: SFTP (a real OpenSSH sshd, tests/sftp/sshd_server.py: a temp file
renamed without replacing) and GCS (tests/gcs_server, ifGenerationMatch=0,
through the service-account JWT path). On each, a second replicate on the
same URL is refused with exit code 4 naming the holder while the first
ships on, and --take-over fences a paused writer off: it exits 4 once it
wakes up and the replica's newest point stays the new writer's. The
scenarios are test_lease.py's, with its helpers and its 3 s lease TTL."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "sftp"))
sys.path.insert(0, HERE)
from walship_test import WALSHIP, Skipped, check_state, run_tests, walship  # noqa: E402
from sshd_server import Sshd, available  # noqa: E402
from test_lease import FENCED, TTL, init_db, log_of, restore, source_n, start, stop, wait_for, write  # noqa: E402

# No agent or emulator setting of the person running the tests may take part.
os.environ.pop("SSH_AUTH_SOCK", None)
os.environ.pop("STORAGE_EMULATOR_HOST", None)


# test_sftp.py and test_gcs.py skip their whole file when their server cannot
# run; here a missing one skips only its backend's tests (Skipped).
def sshd():
    reason = available()
    if reason:
        raise Skipped(reason)
    return Sshd()


def gcs_server(tmp):
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise Skipped("python3-cryptography is not installed (scripts/setup installs it)")
    from test_gcs import GcsServer
    return GcsServer(tmp, auth=True)


def gcs_url(server):
    return f"gs://walship/lease?endpoint={server.endpoint}&credentials-file={server.creds}/service-account.json"


def shipped_to(tmp, url, db):
    """A predicate: the replica's newest point holds db's current n
    (test_lease.shipped, for a URL)."""
    n = source_n(db)

    def check():
        out = f"{tmp}/probe.db"
        return walship("restore", "--force", url, "-o", out).code == 0 and check_state(out) == n
    return check


def kill_leftovers(*procs):
    """Kills what a failed test left running (a stopped process too), so no
    replicate outlives its server."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def second_replicate_is_refused(tmp, url):
    """A second replicate (another database) on a URL a live writer holds
    exits 4 within about one TTL naming the holder, and writes nothing: the
    first ships on and the replica verifies and restores to its data."""
    a, b = f"{tmp}/a.db", f"{tmp}/b.db"
    init_db(a)
    init_db(b)
    write(b, 5)
    first = start(tmp, "first", a, url)
    try:
        wait_for(shipped_to(tmp, url, a), "the first replicate's snapshot")
        write(a, 20)
        # The holder renews while the second waits for an expiry that never
        # comes: refused within about one TTL, naming the holder.
        began = time.monotonic()
        second = subprocess.run([WALSHIP, "replicate", "--lease-ttl", TTL, b, url], capture_output=True, text=True,
                                timeout=60)
        waited = time.monotonic() - began
        assert second.returncode == FENCED, second
        assert f"{socket.gethostname()} pid {first.pid}" in second.stderr, second.stderr
        assert waited < 10, f"the second replicate gave up after {waited:.1f} s, not about one TTL"
        write(a, 10)
        wait_for(shipped_to(tmp, url, a), "the first writer's commits after the refusal")
        assert stop(first) == 0
    finally:
        kill_leftovers(first)
    assert walship("verify", url).code == 0
    restore(tmp, url, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == source_n(a) == 30


def take_over_fences_a_paused_writer(tmp, url):
    """Node 1 is paused (kill -STOP, as a frozen VM); node 2 restores and
    takes over behind a fence. Node 1 wakes up with commits to ship: they
    never become the newest point, and it exits 4."""
    node1, node2 = f"{tmp}/node1.db", f"{tmp}/node2.db"
    init_db(node1)
    old = start(tmp, "node1", node1, url)
    new = None
    try:
        write(node1, 20)
        wait_for(shipped_to(tmp, url, node1), "node 1's commits")
        old.send_signal(signal.SIGSTOP)
        try:
            assert walship("restore", url, "-o", node2).code == 0
            new = start(tmp, "node2", "--take-over", node2, url)
            write(node2, 30)
            wait_for(shipped_to(tmp, url, node2), "node 2's commits")
            assert "fenced off the previous writer" in log_of(tmp, "node2")
            write(node1, 7)  # the zombie app writes on: never to be the newest
        finally:
            old.send_signal(signal.SIGCONT)
        assert old.wait(timeout=30) == FENCED
        assert "taken over by another writer" in log_of(tmp, "node1")
        write(node2, 5)
        wait_for(shipped_to(tmp, url, node2), "node 2's commits after node 1 woke up")
        assert stop(new) == 0
    finally:
        kill_leftovers(old, new)
    # The takeover's snapshot sits at a fence TXID (generation << 40).
    points = json.loads(walship("ls", url, "--json").out)
    assert any(int(p["txid"], 16) % (1 << 40) == 0 for p in points), points
    restore(tmp, url, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == source_n(node2) == 55
    assert walship("verify", url).code == 0


def test_sftp_second_replicate_is_refused_with_exit_4_naming_the_holder(tmp):
    """Lease records created by a non-replacing SFTP rename exclude a second writer."""
    with sshd() as server:
        second_replicate_is_refused(tmp, server.url(f"{tmp}/replica"))


def test_sftp_take_over_fences_a_paused_writer(tmp):
    """--take-over over SFTP: the fence object is there, the old writer exits 4."""
    with sshd() as server:
        take_over_fences_a_paused_writer(tmp, server.url(f"{tmp}/replica"))
        assert os.listdir(f"{tmp}/replica/fences"), "no fence object"


def test_gcs_second_replicate_is_refused_with_exit_4_naming_the_holder(tmp):
    """Lease records created with ifGenerationMatch=0 exclude a second writer."""
    with gcs_server(tmp) as server:
        second_replicate_is_refused(tmp, gcs_url(server))


def test_gcs_take_over_fences_a_paused_writer(tmp):
    """--take-over on GCS: the old writer exits 4, the new one's data is the newest."""
    with gcs_server(tmp) as server:
        take_over_fences_a_paused_writer(tmp, gcs_url(server))


if __name__ == "__main__":
    run_tests([test_sftp_second_replicate_is_refused_with_exit_4_naming_the_holder,
               test_sftp_take_over_fences_a_paused_writer,
               test_gcs_second_replicate_is_refused_with_exit_4_naming_the_holder,
               test_gcs_take_over_fences_a_paused_writer])
