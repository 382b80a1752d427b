"""S3 credentials from roles, with no keys given: the EC2 instance profile
through IMDSv2, container credentials (EKS Pod Identity's full URI with a
token file), a web identity through STS AssumeRoleWithWebIdentity, and a
profile's credential_process. The roles are served by
tests/aws/aws_test_server.py (written from AWS's documentation), and s3rver
accepts only the temporary keys that server issued, the newest two
(older ones are revoked). replicate refreshes short-lived keys before they
expire without a request failing, and shows a failed refresh on /healthz
while its keys still hold; with no role anywhere, one clear line and exit 2."""
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
sys.path.insert(0, os.path.join(HERE, "..", "aws"))
from walship_test import (WALSHIP, clean_log, expect_one_error_line, free_port, round_trip, run_tests,  # noqa: E402
                          walship)
from s3_test_server import S3rver, require_s3rver  # noqa: E402
from aws_test_server import AwsTestServer  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import check_state, init_db, stop, wait_for, write  # noqa: E402

require_s3rver()

# Nothing of the machine running the tests leaks in: no keys, no profile, no role.
CLEAN_ENV = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
             "AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
             "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_CA_BUNDLE": "",
             "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "", "AWS_ROLE_SESSION_NAME": "",
             "AWS_ENDPOINT_URL_STS": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "",
             "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "", "AWS_EC2_METADATA_DISABLED": "",
             "AWS_EC2_METADATA_SERVICE_ENDPOINT": ""}
ROLE_ARN = "arn:aws:iam::123456789012:role/walship-test-role"


class Stores:
    """The role server and an s3rver that takes only its keys."""

    def __init__(self, tmp, *aws_args):
        self.aws = AwsTestServer(f"{tmp}/aws", extra=aws_args)
        self.s3 = S3rver(f"{tmp}/s3", extra=["--credentials-file", self.aws.credentials_file])
        self.url = f"s3://walship/roles?endpoint={self.s3.endpoint}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.s3.close()
        self.aws.close()


def instance_env(aws):
    return {**CLEAN_ENV, "AWS_EC2_METADATA_SERVICE_ENDPOINT": aws.endpoint}


def test_the_instance_profile_through_imdsv2(tmp):
    with Stores(tmp) as stores:
        round_trip(tmp, stores.url, instance_env(stores.aws), verify_and_prune=True)
        stats = stores.aws.stats()
        assert stats["imds_tokens"] >= 1 and stats["imds_credentials"] >= 1, stats


def test_container_credentials_with_a_token_file(tmp):
    with Stores(tmp, "--container-token", "pod-identity-token") as stores:
        with open(f"{tmp}/token", "w") as f:
            f.write("pod-identity-token\n")
        env = {**CLEAN_ENV, "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{stores.aws.endpoint}/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": f"{tmp}/token"}
        round_trip(tmp, stores.url, env)
        assert stores.aws.stats()["container_credentials"] >= 1
        with open(f"{tmp}/token", "w") as f:
            f.write("someone-else\n")
        expect_one_error_line(walship("ls", stores.url, env=env), 1,
                              r"container credentials at .*/v1/credentials: HTTP 401")


def test_a_web_identity_through_sts(tmp):
    with open(f"{tmp}/token", "w") as f:
        f.write("eyJhbGciOiJSUzI1NiJ9.service-account-token\n")
    with Stores(tmp, "--web-identity-token-file", f"{tmp}/token") as stores:
        env = {**CLEAN_ENV, "AWS_WEB_IDENTITY_TOKEN_FILE": f"{tmp}/token", "AWS_ROLE_ARN": ROLE_ARN,
               "AWS_ENDPOINT_URL_STS": stores.aws.endpoint}
        round_trip(tmp, stores.url, env)
        assert stores.aws.stats()["sts_assume"] >= 1
        with open(f"{tmp}/other-token", "w") as f:
            f.write("not-the-cluster's\n")
        r = walship("ls", stores.url, env={**env, "AWS_WEB_IDENTITY_TOKEN_FILE": f"{tmp}/other-token"})
        expect_one_error_line(r, 1, r"STS at .* for role '.*walship-test-role': HTTP 400: InvalidIdentityToken")
        r = walship("ls", stores.url, env={**env, "AWS_ROLE_ARN": ""})
        expect_one_error_line(r, 2, r"a web identity needs both AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN")


def test_a_profiles_credential_process(tmp):
    with Stores(tmp) as stores:
        # A stand-in for `aws configure export-credentials`: it gets keys the
        # way it likes (here, from the container endpoint) and prints them.
        script = f"{tmp}/export-credentials.py"
        with open(script, "w") as f:
            f.write(f"""import json, urllib.request
c = json.load(urllib.request.urlopen("{stores.aws.endpoint}/v2/credentials/app"))
print(json.dumps({{"Version": 1, "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                  "SessionToken": c["Token"], "Expiration": c["Expiration"]}}))
""")
        with open(f"{tmp}/config", "w") as f:
            f.write(f"[profile app]\ncredential_process = {sys.executable} {script}\n"
                    f"[profile broken]\ncredential_process = {sys.executable} -c 'import sys; sys.exit(3)'\n")
        env = {**CLEAN_ENV, "AWS_CONFIG_FILE": f"{tmp}/config", "AWS_PROFILE": "app"}
        round_trip(tmp, stores.url, env)
        r = walship("ls", stores.url, env={**env, "AWS_PROFILE": "broken"})
        expect_one_error_line(r, 1, r"the credential_process of AWS profile 'broken' .* failed \(exit status 3\)")


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)
    except (urllib.error.URLError, ConnectionError):
        return None


def warnings_of(port):
    body = healthz(port)
    return [w for d in body["databases"] for w in d.get("warnings", [])] if body else []


def test_replicate_refreshes_short_lived_keys_and_reports_a_failed_refresh(tmp):
    # Keys that live 20 s are refreshed at half their lifetime; s3rver
    # revokes all but the newest two, so a replicate that kept old keys fails.
    with Stores(tmp, "--lifetime", "20") as stores:
        db, port = f"{tmp}/app.db", free_port()
        init_db(db)
        log = open(f"{tmp}/replicate.log", "w")
        # Bursts of commits restart the WAL now and then, while /healthz is
        # polled: the shape that once lost commits (a scrape released
        # replicate's read of the WAL).
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", "--sync-interval", "100ms",
                                "--http", f"127.0.0.1:{port}", db, stores.url],
                               stdout=subprocess.DEVNULL, stderr=log,
                               env={**os.environ, **instance_env(stores.aws)})
        try:
            wait_for(lambda: healthz(port) is not None, "replicate's /healthz")
            deadline = time.monotonic() + 120
            while stores.aws.stats()["imds_credentials"] < 3:
                assert time.monotonic() < deadline, stores.aws.stats()
                write(db, 5)
                time.sleep(0.2)
            # The instance metadata service fails the next refresh: the
            # current keys go on signing, and /healthz says so. (The retry,
            # 2.5 s later, comes well before they expire.)
            stores.aws.fail("security-credentials", 500, count=1)
            deadline = time.monotonic() + 60
            while not any("unable to refresh the S3 credentials" in w for w in warnings_of(port)):
                assert time.monotonic() < deadline, healthz(port)
                write(db, 5)
                time.sleep(0.1)
            # The service comes back: the next refresh clears the warning.
            while any("unable to refresh" in w for w in warnings_of(port)):
                assert time.monotonic() < deadline, healthz(port)
                write(db, 5)
                time.sleep(0.1)
            n = write(db, 1)
            time.sleep(1)
        finally:
            code = stop(rep)
        text = clean_log(code, f"{tmp}/replicate.log", ("InvalidAccessKeyId", "ExpiredToken", "InvalidToken",
                                                        "step failed"))
        # -v names where the keys came from, each time, never the keys.
        assert "S3 credentials fetched" in text and "the EC2 instance profile" in text, text
        assert "S3 credentials refreshed" in text, text
        for secret in json.load(open(stores.aws.credentials_file)).values():
            assert secret["secret"] not in text and secret["token"] not in text, text
        r = walship("restore", stores.url, "-o", f"{tmp}/out.db", env=instance_env(stores.aws), check=0)
        assert check_state(f"{tmp}/out.db") == n, r


def test_no_role_anywhere_is_one_line_and_exit_2(tmp):
    with Stores(tmp) as stores:
        closed = f"http://127.0.0.1:{free_port()}"
        r = walship("ls", stores.url, env={**CLEAN_ENV, "AWS_EC2_METADATA_SERVICE_ENDPOINT": closed})
        expect_one_error_line(r, 2, r"no S3 credentials; set AWS_ACCESS_KEY_ID .* the EC2 instance metadata "
                                    r"service at http://127\.0\.0\.1:\d+ did not answer \(not on EC2\?\)")
        r = walship("ls", stores.url, env={**CLEAN_ENV, "AWS_EC2_METADATA_DISABLED": "true"})
        expect_one_error_line(r, 2, r"no S3 credentials; .*AWS_EC2_METADATA_DISABLED=true")
        # A database never half-starts: replicate exits 2 the same way.
        init_db(f"{tmp}/app.db")
        r = walship("replicate", f"{tmp}/app.db", stores.url,
                    env={**CLEAN_ENV, "AWS_EC2_METADATA_SERVICE_ENDPOINT": closed}, timeout=120)
        expect_one_error_line(r, 2, r"no S3 credentials")
        assert sqlite3.connect(f"{tmp}/app.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_imdsv1_only_service_is_never_asked_for_keys(tmp):
    """walship never falls back to IMDSv1: a metadata service that refuses
    the session token (an instance with IMDSv1 only, say) gives exit 2 and
    one line, and no credentials are fetched from it."""
    with Stores(tmp, "--imdsv1-only") as stores:
        r = walship("ls", stores.url, env=instance_env(stores.aws))
        expect_one_error_line(r, 2, r"no S3 credentials; the EC2 instance metadata service at .* refused an "
                                    r"IMDSv2 session")
        stats = stores.aws.stats()
        assert stats["imds_credentials"] == 0 and stats["imds_tokens"] == 0, stats


if __name__ == "__main__":
    run_tests([test_the_instance_profile_through_imdsv2, test_container_credentials_with_a_token_file,
               test_a_web_identity_through_sts, test_a_profiles_credential_process,
               test_replicate_refreshes_short_lived_keys_and_reports_a_failed_refresh,
               test_no_role_anywhere_is_one_line_and_exit_2, test_an_imdsv1_only_service_is_never_asked_for_keys])
