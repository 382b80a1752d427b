"""An s3:// replica whose endpoint and credentials are only in walship.toml
(none in the environment): snapshot, status, ls, verify and restore find it
by the database's path ($WALSHIP_CONFIG). Needs node and s3rver
(scripts/setup): skipped without them."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "s3"))
sys.path.insert(0, os.path.dirname(__file__))
from walship_test import run_tests, walship  # noqa: E402
from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, require_s3rver  # noqa: E402
from test_serve_replica import init_source, read_n  # noqa: E402
from test_status import status_json, write_config  # noqa: E402


def test_status_and_commands_of_an_s3_replica_from_the_config_alone(tmp):
    require_s3rver()
    src = f"{tmp}/src.db"
    init_source(src)
    s3 = S3rver(f"{tmp}/s3rver")
    try:
        config = write_config(tmp, f'''
[[databases]]
path = "{src}"
[[databases.replicas]]
url = "s3://walship/app"
endpoint = "{s3.endpoint}"
region = "us-east-1"
access-key-id = "{ACCESS_KEY_ID}"
secret-access-key = "{SECRET_ACCESS_KEY}"
''')
        # No credentials anywhere but the file.
        env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "WALSHIP_CONFIG": config}
        r = walship("snapshot", src, env=env)
        assert r.code == 0 and "s3://walship/app/snapshots/" in r.out, r
        code, body = status_json(config, env=env)
        assert code == 0 and body["replicas"][0]["replica_txid"] == "0000000000000001", body
        r = walship("ls", env=env)
        assert r.code == 0 and "1 restore point" in r.out, r
        r = walship("verify", src, env=env)
        assert r.code == 0, r
        r = walship("restore", src, "-o", f"{tmp}/restored.db", env=env)
        assert r.code == 0 and read_n(f"{tmp}/restored.db") == read_n(src), r
    finally:
        s3.close()


if __name__ == "__main__":
    run_tests([test_status_and_commands_of_an_s3_replica_from_the_config_alone])
