"""Every command (snapshot, ls, restore, replicate) end to end against s3rver
(tests/s3/s3rver_server.js, which verifies SigV4 signatures and payload
hashes): path-style and virtual-hosted addressing, credentials from the
environment, a profile file, the URL options and a session token; restored
bytes equal the source; keys from walship.toml; TLS verified by default,
with ca-file, $AWS_CA_BUNDLE and insecure-skip-verify; a listing past 1000
keys follows every page;
replicate survives its own SIGKILL and the server's; and bad input (wrong
keys, missing bucket, unreachable endpoint, malformed URL or option) gives one
clear line and the documented exit code. The 200 MiB multipart case is in
test_s3_large.py.

With the argument `static`, only the TLS cases, against the shipped static
binary (build-static/dist/walship, or $WALSHIP_STATIC): its curl runs on
mbedTLS, the development build's on OpenSSL. Skipped (exit 77) when that
binary has not been built."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
from walship_test import (WALSHIP, check_rows, create_db, expect_one_error_line, make_db, round_trip,  # noqa: E402
                          run_tests, use_static_binary, using_static_binary, walship)
from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, Client, S3rver, require_s3rver  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import check_state, init_db, source_n, stop, wait_for, write  # noqa: E402

WRITER = os.path.join(HERE, "..", "lib", "writer_app.py")

require_s3rver()

# No credentials or endpoint from the machine running the tests leak in.
CLEAN_ENV = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
             "AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
             "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_CA_BUNDLE": "",
             "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_EC2_METADATA_DISABLED": "true"}  # roles: test_s3_roles.py
KEYS_ENV = {**CLEAN_ENV, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}


def one_error_line(result, code, pattern):
    expect_one_error_line(result, code, pattern)
    for secret in (SECRET_ACCESS_KEY, "Signature=", "wrong/secret", "session-token-value"):
        assert secret not in result.err, f"{secret!r} leaked: {result!r}"


def test_every_command_path_style_with_keys_from_the_environment(tmp):
    with S3rver(f"{tmp}/s3") as server:
        round_trip(tmp, f"s3://walship/apps/db1?endpoint={server.endpoint}", KEYS_ENV, verify_and_prune=True)
        # Every object lives under the prefix, and nothing is half-written.
        assert server.leftover_uploads() == []


def test_every_command_virtual_hosted_with_a_profile_and_a_session_token(tmp):
    with open(f"{tmp}/credentials", "w") as f:
        f.write(f"[default]\naws_access_key_id = WRONG\naws_secret_access_key = wrong\n\n"
                f"[backup]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
                f"aws_session_token = session-token-value\n")
    with open(f"{tmp}/config", "w") as f:
        f.write("[profile backup]\nregion = eu-west-3\n")
    with S3rver(f"{tmp}/s3", extra=["--session-token", "session-token-value"]) as server:
        env = {**CLEAN_ENV, "AWS_SHARED_CREDENTIALS_FILE": f"{tmp}/credentials", "AWS_CONFIG_FILE": f"{tmp}/config",
               "AWS_PROFILE": "backup", "AWS_ENDPOINT_URL_S3": f"http://s3.localhost:{server.port}"}
        # walship.s3.localhost resolves to 127.0.0.1 (RFC 6761); s3rver takes the bucket from the host.
        round_trip(tmp, "s3://walship/db?path-style=false", env, snapshots=2, verify_and_prune=True)
        # The session token is required: without it the server refuses.
        with open(f"{tmp}/credentials", "w") as f:
            f.write(f"[backup]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n")
        one_error_line(walship("ls", "s3://walship/db?path-style=false", env=env), 1,
                       r"InvalidToken \(HTTP 403\).*session token .*profile 'backup'")


def test_keys_in_the_url_options(tmp):
    with S3rver(f"{tmp}/s3") as server:
        quoted = SECRET_ACCESS_KEY.replace("/", "%2F").replace("+", "%2B")
        url = (f"s3://walship/opts?endpoint={server.endpoint}&access-key-id={ACCESS_KEY_ID}"
               f"&secret-access-key={quoted}&region=auto")
        make_db(f"{tmp}/a.db")
        r = walship("snapshot", f"{tmp}/a.db", url, env={**CLEAN_ENV, "AWS_ACCESS_KEY_ID": "WRONG",
                                                          "AWS_SECRET_ACCESS_KEY": "wrong"}, check=0)
        assert SECRET_ACCESS_KEY not in r.out + r.err and quoted not in r.out + r.err, r
        walship("restore", url, "-o", f"{tmp}/b.db", env=CLEAN_ENV, check=0)
        check_rows(f"{tmp}/b.db", 1500)


def test_per_replica_keys_in_walship_toml(tmp):
    db = f"{tmp}/app.db"
    init_db(db)
    with S3rver(f"{tmp}/s3") as server:
        with open(f"{tmp}/walship.toml", "w") as f:
            f.write(f'[[databases]]\npath = "{db}"\nsync-interval = "100ms"\n[[databases.replicas]]\n'
                    f'url = "s3://walship/toml"\n'
                    f'endpoint = "{server.endpoint}"\naccess-key-id = "{ACCESS_KEY_ID}"\n'
                    f'secret-access-key = "${{TEST_S3_SECRET}}"\n')
        env = {**CLEAN_ENV, "TEST_S3_SECRET": SECRET_ACCESS_KEY}
        rep = subprocess.Popen([WALSHIP, "replicate", "--config", f"{tmp}/walship.toml"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **env})
        try:
            url = f"s3://walship/toml?endpoint={server.endpoint}"
            wait_for(lambda: json.loads(walship("ls", url, "--json", env=KEYS_ENV).out or "[]"), "the first snapshot")
            n = write(db, 30)
            time.sleep(0.5)
            assert stop(rep) == 0
        finally:
            if rep.poll() is None:
                rep.kill()
            err = rep.communicate()[1]
        assert SECRET_ACCESS_KEY not in err, err
        walship("restore", url, "-o", f"{tmp}/out.db", env=KEYS_ENV, check=0)
        assert check_state(f"{tmp}/out.db") == n


def test_tls_is_verified_by_default_and_ca_file_and_insecure_skip_verify_work(tmp):
    with S3rver(f"{tmp}/s3", tls=True) as server:
        endpoint = server.endpoint
        if using_static_binary():
            # The static binary's mbedTLS 2.28 matches a certificate's DNS
            # names only, not its IP addresses: the server is "localhost" there.
            endpoint = endpoint.replace("://127.0.0.1:", "://localhost:")
        url = f"s3://walship/tls?endpoint={endpoint}"
        make_db(f"{tmp}/a.db", rows=100, noise=1000)
        # A certificate no CA vouches for is refused at once (not retried).
        one_error_line(walship("snapshot", f"{tmp}/a.db", url, env=KEYS_ENV), 1,
                       rf"^walship: unable to list 's3://walship/tls(/lease/)?': SSL peer certificate .* \({re.escape(endpoint)}\); "
                       r"set ca-file to the CA certificate that signed the store's")
        walship("snapshot", f"{tmp}/a.db", f"{url}&ca-file={server.ca_file}", env=KEYS_ENV, check=0)
        walship("ls", url, env={**KEYS_ENV, "AWS_CA_BUNDLE": server.ca_file}, check=0)
        r = walship("restore", f"{url}&insecure-skip-verify=true", "-o", f"{tmp}/b.db", env=KEYS_ENV, check=0)
        assert "certificate verification is off" in r.err, r
        check_rows(f"{tmp}/b.db", 100)


def test_listing_past_1000_keys_follows_every_page(tmp):
    with S3rver(f"{tmp}/s3") as server:
        url = f"s3://walship/many?endpoint={server.endpoint}"
        make_db(f"{tmp}/a.db", rows=100, noise=1000)
        walship("snapshot", f"{tmp}/a.db", url, env=KEYS_ENV, check=0)
        # 1100 stray objects that sort before the snapshot: it is on the second page.
        client = Client(server)
        for n in range(1100):
            client.put("walship", f"many/snapshots/0-stray-{n:04d}", b"x")
        client.close()
        before = server.stats()
        points = json.loads(walship("ls", url, "--json", env=KEYS_ENV, check=0).out)
        assert [p["txid"] for p in points] == [f"{1:016x}"], points
        after = server.stats()
        # Both pages (and anything else ls asks) over one reused connection
        # (the other new one is this stats request's).
        assert after["requests"] - before["requests"] >= 2, (before, after)
        assert after["connections"] - before["connections"] == 2, (before, after)
        walship("restore", url, "-o", f"{tmp}/b.db", env=KEYS_ENV, check=0)
        check_rows(f"{tmp}/b.db", 100)


def test_replicate_survives_its_own_kill_9_and_the_servers(tmp):
    db = f"{tmp}/app.db"
    init_db(db)
    with S3rver(f"{tmp}/s3") as server:
        url = f"s3://walship/app?endpoint={server.endpoint}"
        env = {**os.environ, **KEYS_ENV}
        log = open(f"{tmp}/replicate.log", "w")

        def start():
            return subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "200ms"],
                                    stdout=subprocess.DEVNULL, stderr=log, env=env)

        rep = start()
        writer = None
        try:
            wait_for(lambda: json.loads(walship("ls", url, "--json", env=KEYS_ENV).out or "[]"), "the first snapshot")
            writer = subprocess.Popen([sys.executable, WRITER, db, f"{tmp}/acks", "--delay", "0.005"])
            time.sleep(1.0)
            rep.send_signal(signal.SIGKILL)  # the replicator dies; the app keeps committing
            rep.wait()
            time.sleep(0.5)
            rep = start()
            time.sleep(1.0)
            server.kill()  # the store goes away mid-replication
            time.sleep(2.0)
            server.start()  # same port, same directory
            time.sleep(2.0)
            writer.send_signal(signal.SIGTERM)
            assert writer.wait(timeout=30) == 0
            n = source_n(db)
            assert stop(rep) == 0, open(f"{tmp}/replicate.log").read()[-3000:]
        finally:
            for proc in (writer, rep):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        text = open(f"{tmp}/replicate.log").read()
        assert "retrying" in text, text[-3000:]
        assert n > 200, n
        walship("restore", url, "-o", f"{tmp}/out.db", env=KEYS_ENV, check=0)
        assert check_state(f"{tmp}/out.db") == n, "a commit acknowledged before the stop is missing"
        points = json.loads(walship("ls", url, "--json", env=KEYS_ENV, check=0).out)
        assert len(points) >= 3, points


def test_bad_input_gives_one_line_and_the_exit_code(tmp):
    create_db(f"{tmp}/a.db", rows=10)
    with S3rver(f"{tmp}/s3") as server:
        ep = server.endpoint
        url = f"s3://walship/db?endpoint={ep}"
        one_error_line(walship("ls", url, env={**KEYS_ENV, "AWS_SECRET_ACCESS_KEY": "wrong/secret"}), 1,
                       r"unable to list 's3://walship/db': SignatureDoesNotMatch \(HTTP 403\): The request signature "
                       r"we calculated does not match.*; check the access key id and secret access key \(from the "
                       r"environment\)$")
        one_error_line(walship("snapshot", f"{tmp}/a.db", url, env={**KEYS_ENV, "AWS_ACCESS_KEY_ID": "AKIDNOPE"}), 1,
                       r"InvalidAccessKeyId \(HTTP 403\): The AWS Access Key Id you provided does not exist")
        one_error_line(walship("ls", f"s3://missing/db?endpoint={ep}", env=KEYS_ENV), 1,
                       rf"unable to list 's3://missing/db': bucket 'missing' does not exist \(NoSuchBucket\) at {ep}$")
        one_error_line(walship("snapshot", f"{tmp}/a.db", f"s3://missing/db?endpoint={ep}", env=KEYS_ENV), 1,
                       r"bucket 'missing' does not exist \(NoSuchBucket\)")
        one_error_line(walship("restore", url, "-o", f"{tmp}/x.db", env=KEYS_ENV), 1,
                       r"no restore point|no snapshot|nothing to restore|replica")
        assert not os.path.exists(f"{tmp}/x.db")
    with S3rver(f"{tmp}/s3-eu", extra=["--region", "eu-west-1"]) as server:
        one_error_line(walship("ls", f"s3://walship/db?endpoint={server.endpoint}", env=KEYS_ENV), 1,
                       r"AuthorizationHeaderMalformed \(HTTP 400\): .*the region 'us-east-1' is wrong.*; the bucket is "
                       r"in region 'eu-west-1': set region=eu-west-1$")
        # The right region: the bucket answers (with nothing in it).
        r = walship("ls", f"s3://walship/db?endpoint={server.endpoint}", env={**KEYS_ENV, "AWS_REGION": "eu-west-1"},
                    check=1)
        assert "no replica at 's3://walship/db'" in r.err, r
    # Malformed URLs and options: exit 2, before any request.
    one_error_line(walship("ls", "s3:///db", env=KEYS_ENV), 2, r"no bucket; use s3://bucket/prefix")
    one_error_line(walship("ls", "s3://walship/db?endpont=http://x", env=KEYS_ENV), 2,
                   r"unknown option 'endpont' for replica 's3://walship/db\?endpont=http://x': s3:// takes endpoint")
    one_error_line(walship("ls", "s3://walship/db?endpoint=localhost:9000", env=KEYS_ENV), 2,
                   r"invalid endpoint 'localhost:9000'.*expected http://host\[:port\]")
    one_error_line(walship("ls", "s3://walship/db?path-style=maybe", env=KEYS_ENV), 2,
                   r"invalid option path-style='maybe'")
    one_error_line(walship("ls", "s3://walship/db?part-size=1000", env=KEYS_ENV), 2, r"5 MiB \(5242880\) to 5 GiB")
    one_error_line(walship("ls", "s3://walship/db", env=CLEAN_ENV), 2,
                   r"no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    one_error_line(walship("ls", "s3://walship/db?profile=nope", env=CLEAN_ENV), 2, r"AWS profile 'nope' is in neither")
    one_error_line(walship("ls", "s3://walship/db?ca-file=/nonexistent/ca.pem", env=KEYS_ENV), 2,
                   r"cannot read the CA file '/nonexistent/ca.pem'")
    one_error_line(walship("ls", "s3://walship/db?secret-access-key=wrong/secret", env=KEYS_ENV), 2,
                   r"access-key-id and secret-access-key go together")
    # Nothing listens: transient, retried, then one line naming the endpoint.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_error_line(walship("ls", f"s3://walship/db?endpoint=http://127.0.0.1:{port}", env=KEYS_ENV), 1,
                   rf"unable to list 's3://walship/db' after \d+ attempts: .*onnect.*http://127\.0\.0\.1:{port}")


if __name__ == "__main__":
    if sys.argv[1:] == ["static"]:
        # The TLS cases again with the shipped static binary (curl on
        # mbedTLS, not the development build's OpenSSL): a CTest test of its
        # own, skipped until scripts/build-static has built the binary.
        use_static_binary()
        run_tests([test_tls_is_verified_by_default_and_ca_file_and_insecure_skip_verify_work])
    else:
        run_tests([test_every_command_path_style_with_keys_from_the_environment,
                   test_every_command_virtual_hosted_with_a_profile_and_a_session_token,
                   test_keys_in_the_url_options, test_per_replica_keys_in_walship_toml,
                   test_tls_is_verified_by_default_and_ca_file_and_insecure_skip_verify_work,
                   test_listing_past_1000_keys_follows_every_page,
                   test_replicate_survives_its_own_kill_9_and_the_servers,
                   test_bad_input_gives_one_line_and_the_exit_code])
