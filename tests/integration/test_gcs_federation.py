"""gs:// replicas through workload identity federation (external_account
credential files, the form GKE and other clouds hand out), against
tests/gcs_server's STS token exchange and IAM credentials endpoints, written
from Google's documentation: a subject token from a file (text) or from a URL
(JSON format, the header the URL wants), exchanged at STS, and optionally for
a service account's token (generateAccessToken). Every command works; a
refused subject token, a wrong audience, an executable source and a token URL
in clear text to another machine each give one line and the documented exit
code; a token that lives 20 s is renewed during a replicate run (the subject
token file read again: it is rotated meanwhile) with no failed request; no
token ever appears in the output."""
import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import WALSHIP, clean_log, expect_one_error_line, round_trip, run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_gcs import GcsServer  # noqa: E402 (skips without python3-cryptography)
from test_replicate import check_state, init_db, stop, wait_for, write  # noqa: E402


def wif_env(server, name):
    return {"GOOGLE_APPLICATION_CREDENTIALS": os.path.join(server.creds, name), "STORAGE_EMULATOR_HOST": "",
            "GCE_METADATA_HOST": "127.0.0.1:1"}


def subject_token(server):
    with open(os.path.join(server.creds, "subject-token")) as f:
        return f.read().strip()


def no_secrets(server, *texts):
    secret = subject_token(server)
    for text in texts:
        assert "ya29." not in text and secret not in text and "eyJ" not in text, text


def variant(server, tmp, name, **changes):
    """A copy of the server's external_account file `name` with `changes`
    (a None value removes the field); returns its path."""
    with open(os.path.join(server.creds, name)) as f:
        doc = json.load(f)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    path = os.path.join(tmp, f"variant-{len(os.listdir(tmp))}.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def test_a_file_source_every_command(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/wif-file?endpoint={server.endpoint}"
        round_trip(tmp, url, wif_env(server, "external-account-file.json"), verify_and_prune=True)
        stats = server.stats()
        # One exchange per command (3 snapshots, 2 ls, 2 restores, 2 verifies,
        # prune, ls, restore), each token cached for all its requests.
        assert stats["sts_exchanges"] == 12, stats
        assert stats["impersonations"] == 0 and stats["sts_refusals"] == 0, stats


def test_a_url_source_in_json_with_its_headers(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/wif-url?endpoint={server.endpoint}"
        env = wif_env(server, "external-account-url.json")
        round_trip(tmp, url, env, snapshots=1)
        stats = server.stats()
        assert stats["subject_token_reads"] == stats["sts_exchanges"] == 5, stats
        # The URL wants its header: without it, the subject token is refused there.
        with open(env["GOOGLE_APPLICATION_CREDENTIALS"]) as f:
            source = json.load(f)["credential_source"]
        del source["headers"]
        path = variant(server, tmp, "external-account-url.json", credential_source=source)
        r = walship("ls", url, env={**env, "GOOGLE_APPLICATION_CREDENTIALS": path})
        expect_one_error_line(r, 1, r"unable to read the subject token from 'http://127\.0\.0\.1:\d+/subject-token': "
                                    r"HTTP 400: invalid_request: Required metadata header not specified")
        no_secrets(server, r.out, r.err)


def test_impersonation_of_a_service_account(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/wif-sa?endpoint={server.endpoint}"
        round_trip(tmp, url, wif_env(server, "external-account-impersonation.json"), snapshots=2)
        stats = server.stats()
        assert stats["impersonations"] == stats["sts_exchanges"] == 6, stats


def test_refusals_are_one_line_with_the_exit_code(tmp):
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/wif?endpoint={server.endpoint}"
        env = wif_env(server, "external-account-file.json")
        # A subject token the pool does not trust: STS says invalid_grant.
        with open(f"{tmp}/other-token", "w") as f:
            f.write("eyJhbGciOiJSUzI1NiJ9.not-this-pools.sig\n")
        path = variant(server, tmp, "external-account-file.json", credential_source={"file": f"{tmp}/other-token"})
        r = walship("ls", url, env={**env, "GOOGLE_APPLICATION_CREDENTIALS": path})
        expect_one_error_line(r, 1, r"unable to get an access token for workload identity pool '//iam\.googleapis\.com/"
                                    r"projects/123456/.*' from 'http://127\.0\.0\.1:\d+/v1/token': HTTP 400: "
                                    r"invalid_grant: The given subject token is invalid or has expired")
        assert "not-this-pools" not in r.err
        path = variant(server, tmp, "external-account-file.json", audience="//iam.googleapis.com/projects/9/x")
        r = walship("ls", url, env={**env, "GOOGLE_APPLICATION_CREDENTIALS": path})
        expect_one_error_line(r, 1, r"HTTP 400: invalid_target: The target service indicated by the \"audience\"")
        path = variant(server, tmp, "external-account-file.json",
                       credential_source={"executable": {"command": "/usr/bin/get-token", "timeout_millis": 5000}})
        r = walship("ls", url, env={**env, "GOOGLE_APPLICATION_CREDENTIALS": path})
        expect_one_error_line(r, 2, r"executable-sourced credentials \(credential_source\.executable\) are not "
                                    r"supported")
        path = variant(server, tmp, "external-account-file.json", token_url="http://sts.example.com/v1/token")
        r = walship("ls", url, env={**env, "GOOGLE_APPLICATION_CREDENTIALS": path})
        expect_one_error_line(r, 2, r"token_url 'http://sts\.example\.com/v1/token' is plain http to another machine")
        path = variant(server, tmp, "external-account-file.json", subject_token_type=None)
        r = walship("ls", url, env={**env, "GOOGLE_APPLICATION_CREDENTIALS": path})
        expect_one_error_line(r, 2, r"no \"subject_token_type\" field")
        assert server.stats()["tokens_issued"] == 0


def test_replicate_renews_tokens_that_live_20_s(tmp):
    with GcsServer(tmp, auth=True, extra=["--token-lifetime", "20"]) as server:
        db = f"{tmp}/app.db"
        url = f"gs://walship/wif-replicate?endpoint={server.endpoint}"
        env = wif_env(server, "external-account-impersonation.json")
        init_db(db)
        log = open(f"{tmp}/replicate.log", "w")
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "100ms"],
                               stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **env})
        try:
            wait_for(lambda: server.stats()["media_uploads"] >= 1, "the initial snapshot")
            start = time.monotonic()
            rotated = False
            n = 0
            # Tokens are renewed at half their life (10 s): three or more
            # exchanges in 26 s, with commits shipped all along.
            while time.monotonic() - start < 26:
                if not rotated and time.monotonic() - start > 5:
                    # The old subject token is refused from now on: the next
                    # exchange works only if the file is read again.
                    urllib.request.urlopen(urllib.request.Request(
                        f"{server.endpoint}/_test/rotate-subject-token", data=b"", method="POST")).close()
                    rotated = True
                n = write(db, 5)
                time.sleep(0.3)
        finally:
            code = stop(rep)
        text = clean_log(code, f"{tmp}/replicate.log", ("HTTP 401", "step failed", "retrying", "level=error",
                                                        "level=warn"))
        # -v says where each token came from and when it expires, never the token.
        assert text.count('msg="GCS access token fetched" from="external_account ') >= 3, text
        stats = server.stats()
        assert stats["sts_exchanges"] >= 3 and stats["impersonations"] >= 3, stats
        assert stats["sts_refusals"] == 0, stats
        no_secrets(server, text)
        walship("restore", url, "-o", f"{tmp}/out.db", env=env, check=0)
        assert check_state(f"{tmp}/out.db") == n, "a shipped commit is missing"


if __name__ == "__main__":
    run_tests([test_a_file_source_every_command, test_a_url_source_in_json_with_its_headers,
               test_impersonation_of_a_service_account, test_refusals_are_one_line_with_the_exit_code,
               test_replicate_renews_tokens_that_live_20_s])
