"""Every command (snapshot, ls, restore, replicate) end to end against
tests/gcs_server, through the service-account JWT path, the metadata-server path and the
STORAGE_EMULATOR_HOST path: restored bytes equal the source, lists follow
every page, big objects go through resumable sessions that survive a lost
answer, transient 5xx are retried, and bad input (unreachable endpoint,
wrong credentials, missing bucket, permission denied, bad options) gives
one clear line and the documented exit code."""
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from server_process import ServerProcess  # noqa: E402
from walship_test import (WALSHIP, check_rows, checkpointed_bytes, create_db, expect_one_error_line, make_db,  # noqa: E402
                          round_trip, run_tests, skip, walship)

sys.path.insert(0, HERE)
from test_replicate import check_state, init_db, stop, wait_for, write  # noqa: E402

SERVER = os.path.join(HERE, "..", "gcs_server", "gcs_server.py")

try:
    import cryptography  # noqa: F401
except ImportError:
    skip("python3-cryptography is not installed (scripts/setup installs it)")


class GcsServer(ServerProcess):
    def __init__(self, tmp, auth, extra=()):
        self.creds = os.path.join(tmp, "creds")
        args = [sys.executable, SERVER, "--bucket", "walship", "--forbidden-bucket", "locked", "--page-size", "2"]
        if auth:
            args += ["--auth", "--credentials-dir", self.creds]
        super().__init__(args + list(extra), "gcs_server")

    def fail(self, match, status, count=1):
        self.post(f"/_test/fail?match={match}&status={status}&count={count}")


def jwt_env(server, key="service-account.json"):
    return {"GOOGLE_APPLICATION_CREDENTIALS": os.path.join(server.creds, key), "STORAGE_EMULATOR_HOST": "",
            "GCE_METADATA_HOST": "127.0.0.1:1"}


def one_error_line(result, code, pattern):
    expect_one_error_line(result, code, pattern)
    assert "BEGIN PRIVATE KEY" not in result.err and "ya29." not in result.err, result  # no secrets


def test_jwt_every_command_with_resumable_uploads_and_pages(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/apps/db1?endpoint={server.endpoint}&resumable-threshold=262144&upload-chunk-size=262144"
        round_trip(tmp, url, jwt_env(server))
        stats = server.stats()
        # One token per command (7 commands), each cached for all its requests.
        assert stats["tokens_issued"] == 7, stats
        assert stats["resumable_sessions"] >= 3 and stats["resumable_chunks"] >= 6, stats
        assert stats["list_pages"] >= 2 * 5, stats  # several pages per listing, all followed


def test_emulator_every_command(tmp):
    with GcsServer(tmp, auth=False) as server:
        env = {"STORAGE_EMULATOR_HOST": server.address, "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent"}
        round_trip(tmp, "gs://walship/db", env)
        assert server.stats()["tokens_issued"] == 0


def test_metadata_server_credentials(tmp):
    with GcsServer(tmp, auth=True) as server:
        env = {"GCE_METADATA_HOST": server.address, "STORAGE_EMULATOR_HOST": "",
               "GOOGLE_APPLICATION_CREDENTIALS": ""}
        round_trip(tmp, f"gs://walship/db?endpoint={server.endpoint}", env, snapshots=1)
        assert server.stats()["tokens_issued"] == 5  # one per command


def test_transient_errors_are_retried(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/db?endpoint={server.endpoint}"
        server.fail("/o?", 503, count=2)
        server.fail("/token", 500, count=1)
        create_db(f"{tmp}/a.db", rows=100)
        r = walship("snapshot", f"{tmp}/a.db", url, env=jwt_env(server), check=0)
        assert "retrying" in r.err, r
        server.fail("alt=media", 429, count=2)
        walship("restore", url, "-o", f"{tmp}/b.db", env=jwt_env(server), check=0)
        check_rows(f"{tmp}/b.db", 100)


def test_resumable_upload_survives_a_lost_answer(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/db?endpoint={server.endpoint}&resumable-threshold=262144&upload-chunk-size=262144"
        make_db(f"{tmp}/a.db")
        # The second chunk is stored but its answer never arrives; then a 503.
        server.fail("upload_id", 0, count=1)
        server.fail("upload_id", 503, count=1)
        walship("snapshot", f"{tmp}/a.db", url, env=jwt_env(server), check=0)
        stats = server.stats()
        assert stats["resumable_sessions"] == 1, stats  # resumed, not restarted
        assert stats["status_queries"] >= 1, stats  # (the first one got the 503)
        walship("restore", url, "-o", f"{tmp}/b.db", env=jwt_env(server), check=0)
        with open(f"{tmp}/b.db", "rb") as f:
            assert f.read() == checkpointed_bytes(f"{tmp}/a.db")


def test_bad_input_gives_one_line_and_the_exit_code(tmp):
    create_db(f"{tmp}/a.db", rows=10)
    with GcsServer(tmp, auth=True) as server:
        env = jwt_env(server)
        ep = server.endpoint
        one_error_line(walship("ls", f"gs://missing/db?endpoint={ep}", env=env), 1,
                       r"unable to list 'gs://missing/db': bucket 'missing' does not exist")
        one_error_line(walship("snapshot", f"{tmp}/a.db", f"gs://locked/db?endpoint={ep}", env=env), 1,
                       r"gs://locked/db.*HTTP 403: .*does not have storage\.objects\.\w+ access.*check the service "
                       r"account's permissions on bucket 'locked'")
        one_error_line(walship("ls", f"gs://walship/db?endpoint={ep}", env=jwt_env(server, "wrong-service-account.json")),
                       1, r"unable to get an access token for service account '.*' from '.*/token': HTTP 400: "
                          r"invalid_grant: Invalid JWT Signature")
        one_error_line(walship("restore", f"gs://walship/db?endpoint={ep}", "-o", f"{tmp}/x.db", env=env), 1,
                       r"no restore point|no snapshot|nothing to restore|replica")
        assert not os.path.exists(f"{tmp}/x.db")
        one_error_line(walship("ls", f"gs://walship/db?endpoint={ep}&bogus=1", env=env), 2,
                       r"unknown option 'bogus' for replica")
        one_error_line(walship("ls", f"gs://walship/db?endpoint={ep}&credentials-file={tmp}/none.json", env=env), 2,
                       rf"unable to read Google Cloud credentials file '{tmp}/none.json'")
        with open(f"{tmp}/user.json", "w") as f:
            json.dump({"type": "authorized_user"}, f)
        one_error_line(walship("ls", f"gs://walship/db?endpoint={ep}", env={**env, "GOOGLE_APPLICATION_CREDENTIALS":
                                                                              f"{tmp}/user.json"}), 2,
                       r"unsupported Google Cloud credentials file .*use a service-account key")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_error_line(walship("ls", "gs://walship/db", env={"STORAGE_EMULATOR_HOST": f"127.0.0.1:{port}"}), 1,
                   rf"unable to list 'gs://walship/db' after \d+ attempts: .*connect.*127\.0\.0\.1:{port}")
    one_error_line(walship("ls", "gs://walship/db", env={"GOOGLE_APPLICATION_CREDENTIALS": "",
                                                          "STORAGE_EMULATOR_HOST": "",
                                                          "GCE_METADATA_HOST": f"127.0.0.1:{port}"}), 1,
                   r"no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS")


def test_replicate_through_jwt_and_emulator_paths(tmp):
    for auth in (True, False):
        work = f"{tmp}/{'jwt' if auth else 'emulator'}"
        os.makedirs(work)
        db = f"{work}/app.db"
        init_db(db)
        write(db, 10)
        with GcsServer(work, auth=auth) as server:
            if auth:
                env, url = jwt_env(server), f"gs://walship/app?endpoint={server.endpoint}"
            else:
                env, url = {"STORAGE_EMULATOR_HOST": server.address}, "gs://walship/app"
            log = open(f"{work}/replicate.log", "w")
            rep = subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "100ms"],
                                   stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **env})
            try:
                wait_for(lambda: server.stats()["media_uploads"] >= 1, "the initial snapshot")
                n = 0
                for burst in range(4):
                    if burst == 2:
                        server.fail("/o", 503, count=4)  # an outage of the API mid-replication
                    n = write(db, 50)
                    time.sleep(0.4)
                assert stop(rep) == 0, open(f"{work}/replicate.log").read()
            finally:
                if rep.poll() is None:
                    rep.kill()
                    rep.wait()
            walship("restore", url, "-o", f"{work}/out.db", env=env, check=0)
            assert check_state(f"{work}/out.db") == n, f"auth={auth}: a shipped commit is missing"
            points = json.loads(walship("ls", url, "--json", env=env, check=0).out)
            assert len(points) >= 4, points
            if auth:
                assert server.stats()["tokens_issued"] >= 3, server.stats()


if __name__ == "__main__":
    run_tests([test_jwt_every_command_with_resumable_uploads_and_pages, test_emulator_every_command,
               test_metadata_server_credentials, test_transient_errors_are_retried,
               test_resumable_upload_survives_a_lost_answer, test_bad_input_gives_one_line_and_the_exit_code,
               test_replicate_through_jwt_and_emulator_paths])
