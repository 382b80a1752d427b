"""Every command (snapshot, ls, restore, replicate) end to end against a
real OpenSSH sshd on 127.0.0.1 (throwaway host and user keys,
tests/sftp/sshd_server.py): key files given or found in ~/.ssh, ssh-agent,
passphrases from $WALSHIP_SSH_PASSPHRASE;
unknown or changed host keys refused; sshd killed mid-upload and restarted
leaves nothing half-written visible and the command recovers; sshd killed
mid-replication: replicate reconnects and loses nothing; bad input
(unreachable host, wrong key, read-only server, missing folder, bad
options) gives one clear line and the documented exit code."""
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "sftp"))
sys.path.insert(0, HERE)
from walship_test import (WALSHIP, check_rows, checkpointed_bytes, create_db, expect_one_error_line,  # noqa: E402
                          run_tests, skip, walship)
from sshd_server import Sshd, available, free_port, keygen  # noqa: E402
from test_replicate import check_state, init_db, source_n, stop, wait_for, write  # noqa: E402

WRITER = os.path.join(HERE, "..", "lib", "writer_app.py")

reason = available()
if reason:
    skip(reason)

# No agent or key of the person running the tests may take part.
BASE_ENV = {"SSH_AUTH_SOCK": "", "WALSHIP_SSH_PASSPHRASE": ""}
os.environ.pop("SSH_AUTH_SOCK", None)


def visible_files(root):
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(out)


def test_every_command_with_key_and_known_hosts_options(tmp):
    with Sshd() as sshd:
        url = sshd.url(f"{tmp}/replica/db1")
        create_db(f"{tmp}/a.db", rows=3000)
        for n in (1, 2, 3):
            if n > 1:
                db = sqlite3.connect(f"{tmp}/a.db", isolation_level=None)
                db.execute("INSERT INTO t(id, payload) SELECT id + 3000 * ?, payload FROM t WHERE id <= 10", (n,))
                db.close()
            r = walship("snapshot", f"{tmp}/a.db", url, env=BASE_ENV, check=0)
            assert f"snapshot {n:016x}" in r.out and "sftp://" in r.out and "?" not in r.out, r
        assert walship("ls", "-v", url, env=BASE_ENV, check=0).out.count("snapshot") == 3
        points = json.loads(walship("ls", url, "--json", env=BASE_ENV, check=0).out)
        assert [p["txid"] for p in points] == [f"{n:016x}" for n in (3, 2, 1)], points
        walship("restore", url, "-o", f"{tmp}/b.db", env=BASE_ENV, check=0)
        with open(f"{tmp}/b.db", "rb") as f:
            assert f.read() == checkpointed_bytes(f"{tmp}/a.db")
        walship("restore", url, "-o", f"{tmp}/first.db", "--txid", "1", env=BASE_ENV, check=0)
        check_rows(f"{tmp}/first.db", 3000)
        assert not [f for f in visible_files(f"{tmp}/replica") if "walship-tmp" in f]


def test_default_key_and_known_hosts_from_home(tmp):
    with Sshd() as sshd:
        home = f"{tmp}/home"
        os.makedirs(f"{home}/.ssh")
        shutil.copy(sshd.user_key, f"{home}/.ssh/id_ed25519")
        shutil.copy(sshd.known_hosts, f"{home}/.ssh/known_hosts")
        env = {**BASE_ENV, "HOME": home}
        create_db(f"{tmp}/a.db", rows=100)
        url = sshd.url(f"{tmp}/replica", options=False)
        walship("snapshot", f"{tmp}/a.db", url, env=env, check=0)
        walship("restore", url, "-o", f"{tmp}/b.db", env=env, check=0)
        check_rows(f"{tmp}/b.db", 100)


def test_ssh_agent_and_passphrase(tmp):
    with Sshd() as sshd:
        # A key with a passphrase, authorized on the server.
        keygen(f"{tmp}/locked", "walship-test-locked", passphrase="correct horse")
        with open(f"{sshd.dir}/authorized_keys", "a") as f, open(f"{tmp}/locked.pub") as pub:
            f.write(pub.read())
        os.unlink(sshd.user_key)  # so only the agent or the locked key can log in
        create_db(f"{tmp}/a.db", rows=50)
        url = f"{sshd.url(f'{tmp}/replica', options=False)}?known-hosts={sshd.known_hosts}"
        keyed = f"{url}&key={tmp}/locked"
        walship("snapshot", f"{tmp}/a.db", keyed, env={**BASE_ENV, "WALSHIP_SSH_PASSPHRASE": "correct horse"}, check=0)
        expect_one_error_line(walship("ls", keyed, env={**BASE_ENV, "WALSHIP_SSH_PASSPHRASE": "wrong"}), 1,
                       rf"unable to log in to '127\.0\.0\.1:{sshd.port}' .* as '{sshd.user}' \(tried {tmp}/locked\).*"
                       r"WALSHIP_SSH_PASSPHRASE")

        agent_sock = f"{tmp}/agent.sock"
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdout=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(agent_sock):
                    break
                time.sleep(0.01)
            subprocess.run(["ssh-add", "-q", f"{tmp}/locked"], env={**os.environ, "SSH_AUTH_SOCK": agent_sock,
                                                                       "SSH_ASKPASS_REQUIRE": "never"},
                           input="correct horse\n", text=True, check=False, capture_output=True)
            listed = subprocess.run(["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": agent_sock},
                                    capture_output=True, text=True)
            if "walship-test-locked" not in listed.stdout:
                # ssh-add reads a passphrase only from a terminal or askpass: add an unlocked copy.
                subprocess.run(["ssh-keygen", "-q", "-p", "-P", "correct horse", "-N", "", "-f", f"{tmp}/locked"],
                               check=True)
                subprocess.run(["ssh-add", "-q", f"{tmp}/locked"], env={**os.environ, "SSH_AUTH_SOCK": agent_sock},
                               check=True, capture_output=True)
                os.unlink(f"{tmp}/locked")
            env = {**BASE_ENV, "SSH_AUTH_SOCK": agent_sock, "HOME": f"{tmp}/empty-home"}
            walship("restore", url, "-o", f"{tmp}/b.db", env=env, check=0)
            check_rows(f"{tmp}/b.db", 50)
        finally:
            agent.terminate()
            agent.wait()


def test_the_host_key_type_known_hosts_holds_is_asked_for(tmp):
    # The server has ed25519, ECDSA and RSA host keys; known_hosts lists one
    # of them. libssh2 alone would ask for ECDSA and call the host unknown.
    with Sshd(extra_host_keys=("ecdsa", "rsa")) as sshd:
        create_db(f"{tmp}/a.db", rows=20)
        base = sshd.url(f"{tmp}/replica", options=False) + f"?key={sshd.user_key}"
        walship("snapshot", f"{tmp}/a.db", f"{base}&known-hosts={sshd.known_hosts}", env=BASE_ENV, check=0)
        # Hashed, as Debian's ssh writes them (HashKnownHosts yes).
        shutil.copy(sshd.known_hosts, f"{tmp}/hashed_known_hosts")
        subprocess.run(["ssh-keygen", "-q", "-H", "-f", f"{tmp}/hashed_known_hosts"], check=True, capture_output=True)
        with open(f"{tmp}/hashed_known_hosts") as f:
            assert f.read().startswith("|1|")
        walship("restore", f"{base}&known-hosts={tmp}/hashed_known_hosts", "-o", f"{tmp}/b.db", env=BASE_ENV, check=0)
        check_rows(f"{tmp}/b.db", 20)


def test_unknown_or_changed_host_key_is_refused(tmp):
    with Sshd() as sshd:
        create_db(f"{tmp}/a.db", rows=10)
        base = sshd.url(f"{tmp}/replica", options=False) + f"?key={sshd.user_key}"
        open(f"{tmp}/empty_known_hosts", "w").close()
        expect_one_error_line(walship("snapshot", f"{tmp}/a.db", f"{base}&known-hosts={tmp}/empty_known_hosts", env=BASE_ENV),
                       1, rf"host key verification failed for '127\.0\.0\.1:{sshd.port}'.*no ssh-ed25519 key for it "
                          rf"in '{tmp}/empty_known_hosts'; add it with ssh-keyscan -p {sshd.port} 127\.0\.0\.1")
        keygen(f"{tmp}/other_host", "other")
        with open(f"{tmp}/other_host.pub") as f:
            kind, key = f.read().split()[:2]
        with open(f"{tmp}/changed_known_hosts", "w") as f:
            f.write(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
        expect_one_error_line(walship("snapshot", f"{tmp}/a.db", f"{base}&known-hosts={tmp}/changed_known_hosts",
                               env=BASE_ENV), 1, r"host key verification failed.*differs from the one in")
        expect_one_error_line(walship("ls", f"{base}&known-hosts={tmp}/none", env=BASE_ENV), 1,
                       rf"cannot read known hosts file '{tmp}/none'")
        assert not os.path.exists(f"{tmp}/replica")


def test_bad_input_gives_one_line_and_the_exit_code(tmp):
    create_db(f"{tmp}/a.db", rows=10)
    with Sshd() as sshd:
        keygen(f"{tmp}/stranger", "stranger")
        expect_one_error_line(walship("ls", f"{sshd.url(f'{tmp}/r', options=False)}?key={tmp}/stranger&known-hosts="
                                     f"{sshd.known_hosts}", env=BASE_ENV), 1,
                       r"unable to log in to .* as '.*' \(tried .*/stranger\).*authorized_keys")
        expect_one_error_line(walship("restore", sshd.url(f"{tmp}/missing/folder"), "-o", f"{tmp}/x.db", env=BASE_ENV), 1,
                       r"replica|snapshot|restore")
        assert not os.path.exists(f"{tmp}/x.db")
        expect_one_error_line(walship("ls", sshd.url(f"{tmp}/r") + "&identity=x", env=BASE_ENV), 2,
                       r"unknown option 'identity' for replica .*: sftp:// takes key and known-hosts")
        expect_one_error_line(walship("ls", f"sftp://u@127.0.0.1:{sshd.port}/", env=BASE_ENV), 2,
                       r"the path must be an absolute directory")
        expect_one_error_line(walship("ls", f"{sshd.url(f'{tmp}/r', options=False)}?key={tmp}/nokey&known-hosts={sshd.known_hosts}",
                               env=BASE_ENV), 2,
                       rf"unable to read SSH key '{tmp}/nokey'")
    with Sshd(read_only=True) as sshd:
        expect_one_error_line(walship("snapshot", f"{tmp}/a.db", sshd.url(f"{tmp}/ro"), env=BASE_ENV), 1,
                       rf"unable to write 'sftp://.*{tmp}/ro/(snapshots|lease)/.*': permission denied")
    port = free_port()
    start = time.time()
    expect_one_error_line(walship("ls", f"sftp://u@127.0.0.1:{port}/r", env=BASE_ENV), 1,
                   rf"unable to list 'sftp://u@127\.0\.0\.1:{port}/r' after \d+ attempts: unable to connect to "
                   rf"'127\.0\.0\.1:{port}'.*Connection refused")
    assert time.time() - start < 30


def test_sshd_killed_mid_upload_and_restarted(tmp):
    src = f"{tmp}/a.db"
    create_db(src, rows=200)
    db = sqlite3.connect(src, isolation_level=None)
    db.execute("CREATE TABLE noise(b BLOB)")
    rng = random.Random(5)
    for _ in range(48):  # 48 MiB that do not compress: an upload long enough to interrupt
        db.execute("INSERT INTO noise VALUES(?)", (rng.randbytes(1 << 20),))
    db.close()
    with Sshd() as sshd:
        url = sshd.url(f"{tmp}/replica")
        proc = subprocess.Popen([WALSHIP, "snapshot", src, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, **BASE_ENV})
        # Wait until the temp file is being written, then kill sshd and every
        # connection it serves, as a crash of the host would.
        seen = None
        deadline = time.time() + 60
        while time.time() < deadline and seen is None and proc.poll() is None:
            for f in visible_files(f"{tmp}/replica") if os.path.isdir(f"{tmp}/replica") else []:
                path = f"{tmp}/replica/{f}"
                if "walship-tmp" in f and os.path.getsize(path) > (4 << 20):
                    seen = path
            time.sleep(0.005)
        assert seen, "the upload finished before sshd could be killed; make the database bigger"
        sshd.kill()
        killed_at = time.time()
        # Nothing half-written is visible as an object.
        listing = walship("ls", "-v", f"file://{tmp}/replica", check=None)
        assert "snapshot" not in listing.out, listing
        time.sleep(0.5)
        sshd.start()
        out, err = proc.communicate(timeout=120)
        recovered = time.time() - killed_at
        print(f"  sshd killed mid-upload at {os.path.getsize(seen) if os.path.exists(seen) else '?'} bytes; "
              f"snapshot exit {proc.returncode} {recovered:.1f} s later")
        if proc.returncode == 0:
            assert "retrying" in err and "reconnecting" in err, err
            walship("restore", url, "-o", f"{tmp}/b.db", env=BASE_ENV, check=0)
            with open(f"{tmp}/b.db", "rb") as f:
                assert f.read() == checkpointed_bytes(src)
        else:
            lines = [line for line in err.splitlines() if line.startswith("walship:")]
            assert proc.returncode == 1 and len(lines) == 1, err
            assert walship("ls", "-v", url, env=BASE_ENV).out.count("snapshot") == 0
        # The snapshot's lease records aside (lease.h).
        objects = [f for f in visible_files(f"{tmp}/replica") if "walship-tmp" not in f and not f.startswith("lease/")]
        assert objects == (["snapshots/0000000000000001.snap"] if proc.returncode == 0 else []), objects


def test_replicate_recovers_when_sshd_is_killed_and_restarted(tmp):
    db = f"{tmp}/app.db"
    init_db(db)
    write(db, 20)
    with Sshd() as sshd:
        url = sshd.url(f"{tmp}/replica")
        log = open(f"{tmp}/replicate.log", "w")
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "200ms"],
                               stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **BASE_ENV})
        writer = None
        try:
            wait_for(lambda: os.path.isdir(f"{tmp}/replica/snapshots") and os.listdir(f"{tmp}/replica/snapshots"),
                     "the initial snapshot")
            writer = subprocess.Popen([sys.executable, WRITER, db, f"{tmp}/acks", "--delay", "0.005"])
            time.sleep(1.5)
            sshd.kill()  # the host crashes mid-replication; the app keeps committing
            time.sleep(2.5)
            sshd.start()
            time.sleep(2.5)
            writer.send_signal(signal.SIGTERM)
            assert writer.wait(timeout=30) == 0
            n = source_n(db)
            assert stop(rep) == 0, open(f"{tmp}/replicate.log").read()
        finally:
            for proc in (writer, rep):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        text = open(f"{tmp}/replicate.log").read()
        assert "reconnecting" in text, text[-3000:]
        assert n > 200, n
        walship("restore", url, "-o", f"{tmp}/out.db", env=BASE_ENV, check=0)
        assert check_state(f"{tmp}/out.db") == n, "a commit acknowledged before the stop is missing"
        points = json.loads(walship("ls", url, "--json", env=BASE_ENV, check=0).out)
        assert len(points) >= 3, points
        # Nothing half-written is an object: temp files only, and never listed.
        for f in visible_files(f"{tmp}/replica"):
            name = os.path.basename(f)
            assert "walship-tmp" in name or name.endswith((".snap", ".delta")) or f.startswith("lease/"), f


if __name__ == "__main__":
    run_tests([test_every_command_with_key_and_known_hosts_options, test_default_key_and_known_hosts_from_home,
               test_ssh_agent_and_passphrase, test_the_host_key_type_known_hosts_holds_is_asked_for,
               test_unknown_or_changed_host_key_is_refused,
               test_bad_input_gives_one_line_and_the_exit_code, test_sshd_killed_mid_upload_and_restarted,
               test_replicate_recovers_when_sshd_is_killed_and_restarted])
