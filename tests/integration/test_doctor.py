"""`walship doctor URL` against every kind of store and credential source:
file://, s3:// with keys from the environment and with the EC2 instance
profile's role (tests/aws/aws_test_server.py), gs:// with a service-account
key file and with an external_account file (workload identity federation).
It names the backend and where the credentials come from, when temporary
ones expire and whether conditional writes are honoured, proves access with
one LIST, exits 0 / 1 / 2, and never prints a secret. sftp:// names the key
it logged in with."""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
sys.path.insert(0, os.path.join(HERE, "..", "aws"))
from walship_test import create_db, expect_one_error_line, run_tests, skip, walship  # noqa: E402


def field(out, name):
    """The value of doctor's line `name`."""
    for line in out.splitlines():
        if line.split(" ", 1)[0] == name:
            return line[len(name):].strip()
    raise AssertionError(f"no {name!r} line in:\n{out}")


def test_file_replica(tmp):
    r = walship("doctor", f"file://{tmp}/replica", check=0)
    assert field(r.out, "backend") == "file", r
    assert field(r.out, "credentials") == "none needed", r
    assert field(r.out, "list") == "ok (0 snapshots: no replica here yet)", r
    assert field(r.out, "conditional").startswith("honoured"), r
    assert field(r.out, "result") == "ok", r
    create_db(f"{tmp}/a.db", rows=10)
    walship("snapshot", f"{tmp}/a.db", f"{tmp}/replica", check=0)
    r = walship("doctor", f"{tmp}/replica", check=0)
    assert field(r.out, "list") == "ok (1 snapshot)", r
    # Usage errors: exit 2.
    expect_one_error_line(walship("doctor", "relative/path", env={"WALSHIP_CONFIG": ""}), 2, r"relative|absolute")
    expect_one_error_line(walship("doctor", "file:///x", "--bogus"), 2, r"--bogus")


def s3_parts():
    try:
        from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, require_s3rver
        from aws_test_server import AwsTestServer
    except ImportError as e:
        skip(f"the S3 test servers cannot be loaded: {e}")
    require_s3rver()
    return ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, AwsTestServer


CLEAN_AWS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
             "AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
             "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_CA_BUNDLE": "",
             "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_EC2_METADATA_DISABLED": "",
             "AWS_EC2_METADATA_SERVICE_ENDPOINT": ""}


def test_s3_with_environment_keys_and_with_an_instance_role(tmp):
    access_key_id, secret, S3rver, AwsTestServer = s3_parts()
    s3 = S3rver(f"{tmp}/s3")
    try:
        env = {**CLEAN_AWS, "AWS_ACCESS_KEY_ID": access_key_id, "AWS_SECRET_ACCESS_KEY": secret}
        r = walship("doctor", f"s3://walship/app?endpoint={s3.endpoint}", env=env, check=0)
        assert field(r.out, "backend") == "s3", r
        assert field(r.out, "credentials") == "the environment", r
        assert field(r.out, "conditional").startswith("honoured"), r
        assert "expires" not in r.out, r  # keys that do not expire
        assert secret not in r.out + r.err, r
        r = walship("doctor", f"s3://missing/app?endpoint={s3.endpoint}", env=env)
        expect_one_error_line(r, 1, r"doctor: unable to list .*s3://missing/app")
        assert field(r.out, "list").startswith("failed: "), r
        assert field(r.out, "result") == "failed", r
    finally:
        s3.close()
    with AwsTestServer(f"{tmp}/aws") as aws:
        s3 = S3rver(f"{tmp}/s3-roles", extra=["--credentials-file", aws.credentials_file])
        try:
            env = {**CLEAN_AWS, "AWS_EC2_METADATA_SERVICE_ENDPOINT": aws.endpoint}
            r = walship("doctor", f"s3://walship/app?endpoint={s3.endpoint}", env=env, check=0)
            assert field(r.out, "credentials") == (f"IMDSv2 role 'walship-test-role' of the EC2 instance profile "
                                                   f"(instance metadata at {aws.endpoint})"), r
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \(in 5\d min, renewed before then\)",
                            field(r.out, "expires")), r
            for key_id, c in aws.credentials().items():
                assert key_id not in r.out + r.err and c["secret"] not in r.out + r.err, r
                assert c["token"] not in r.out + r.err, r
        finally:
            s3.close()


def test_gcs_with_a_key_file_and_with_workload_identity_federation(tmp):
    sys.path.insert(0, HERE)
    from test_gcs import GcsServer  # skips without python3-cryptography
    with GcsServer(tmp, auth=True) as server:
        url = f"gs://walship/app?endpoint={server.endpoint}"
        key = os.path.join(server.creds, "service-account.json")
        r = walship("doctor", url, env={"GOOGLE_APPLICATION_CREDENTIALS": key, "STORAGE_EMULATOR_HOST": ""}, check=0)
        assert field(r.out, "backend") == "gs", r
        assert field(r.out, "credentials") == (f"key file {key} (service account "
                                               f"walship-test@walship-test.iam.gserviceaccount.com)"), r
        assert re.search(r"\(in 59 min, renewed before then\)", field(r.out, "expires")), r
        assert field(r.out, "conditional").startswith("honoured"), r
        wif = os.path.join(server.creds, "external-account-impersonation.json")
        r = walship("doctor", url, env={"GOOGLE_APPLICATION_CREDENTIALS": wif, "STORAGE_EMULATOR_HOST": ""}, check=0)
        assert field(r.out, "credentials") == (
            f"external_account {wif} (audience //iam.googleapis.com/projects/123456/locations/global/"
            f"workloadIdentityPools/walship-test/providers/test, subject token from file "
            f"{server.creds}/subject-token, impersonating walship-test@walship-test.iam.gserviceaccount.com)"), r
        assert field(r.out, "list") == "ok (0 snapshots: no replica here yet)", r
        with open(os.path.join(server.creds, "subject-token")) as f:
            subject = f.read().strip()
        with open(key) as f:
            private_key = json.load(f)["private_key"]
        for text in (r.out + r.err,):
            assert "ya29." not in text and subject not in text and private_key[40:80] not in text, text
        # Not reachable: exit 1, the report says what failed.
        r = walship("doctor", url, env={"GOOGLE_APPLICATION_CREDENTIALS": "", "STORAGE_EMULATOR_HOST": "",
                                        "GCE_METADATA_HOST": "127.0.0.1:1"})
        expect_one_error_line(r, 1, r"doctor: no Google Cloud credentials")
        assert field(r.out, "credentials") == "the metadata server at 127.0.0.1:1", r


def test_sftp_with_a_key(tmp):
    sys.path.insert(0, os.path.join(HERE, "..", "sftp"))
    from sshd_server import Sshd, available
    reason = available()
    if reason:
        skip(reason)
    with Sshd() as sshd:
        r = walship("doctor", sshd.url(f"{tmp}/replica"), env={"SSH_AUTH_SOCK": ""}, check=0)
        assert field(r.out, "backend") == "sftp", r
        assert field(r.out, "credentials") == f"key {sshd.user_key} as user '{sshd.user}'", r
        assert field(r.out, "conditional").startswith("honoured"), r
        assert "PRIVATE KEY" not in r.out + r.err, r


if __name__ == "__main__":
    run_tests([test_file_replica, test_s3_with_environment_keys_and_with_an_instance_role,
               test_gcs_with_a_key_file_and_with_workload_identity_federation, test_sftp_with_a_key])
