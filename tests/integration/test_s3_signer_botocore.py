"""walship's SigV4 signer against an independent implementation: botocore's
S3SigV4Auth (the signer of the AWS CLI and boto3). A few hundred random S3
requests, from a fixed seed, are signed by botocore at a fixed time, and
tests/tools/sigv4_tool.cpp (walship's signer) must produce the identical
Authorization header for each: object keys with spaces, unicode, '+', '~',
'/', '=', '&' and the rest of ASCII, query parameters with empty values and
repeated names, header names in any case, values with runs of spaces, headers
given twice, session tokens, signed and unsigned payloads.

The published vectors are replayed by the unit tests
(tests/unit/test_backends_s3_signer.cpp); this test covers what they do not."""
import json
import os
import random
import subprocess
import sys
import types
import urllib.parse
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import WALSHIP, run_tests, skip  # noqa: E402

try:
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
except ImportError as e:
    # scripts/setup installs Debian's python3-botocore, for the system
    # python3; a python3 of its own earlier on PATH may lack it: run with the
    # system one then.
    system = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(system) and subprocess.run(
            [system, "-c", "import botocore.auth"], capture_output=True).returncode == 0:
        os.execv(system, [system, *sys.argv])
    skip(f"botocore cannot be imported ({e}): scripts/setup installs python3-botocore")

TOOL = os.environ.get("WALSHIP_SIGV4_TOOL") or os.path.join(os.path.dirname(WALSHIP), "tests", "walship-sigv4-tool")
SEED = 20261201
REQUESTS = 400
AMZ_DATE = "20261201T120000Z"

# Pieces of object keys: every character class that S3 keys meet in the wild.
KEY_PIECES = (
    ["a", "Z", "0", "db", "snapshots", "deltas", "L0", "0000000000000001.delta"]
    + list(" +~/=&$%?#!'()*,;:@[]{}|\\^`\"<>-._")
    + ["  ", "//", "./", "../", "é", "ü", "日本", "\u1234", "🐘", "\u00a0", "%20", "%2F", "+%+"]
)
QUERY_NAMES = ["prefix", "list-type", "continuation-token", "max-keys", "start-after", "delete", "uploads",
               "partNumber", "uploadId", "x-id", "versionId", "Z", "a b", "a+b", "é", "{", "~"]
HEADER_NAMES = ["Content-Type", "content-md5", "Range", "If-None-Match", "if-match", "Cache-Control",
                "X-Amz-Storage-Class", "x-amz-checksum-sha256", "X-AMZ-META-Owner", "x-amz-meta-note",
                "x-amz-copy-source", "Content-Disposition"]
REGIONS = ["us-east-1", "eu-central-1", "ap-southeast-2", "auto", "garage"]
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def fixed_clock():
    """Patches botocore's clock to AMZ_DATE (the hook moved between releases)."""
    import datetime
    when = datetime.datetime.strptime(AMZ_DATE, "%Y%m%dT%H%M%SZ")
    if hasattr(botocore.auth, "get_current_datetime"):
        return mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: when)
    fake = types.SimpleNamespace(datetime=types.SimpleNamespace(utcnow=lambda: when, strptime=datetime.datetime.strptime))
    return mock.patch.object(botocore.auth, "datetime", fake)


def random_text(rng, pieces, low, high):
    return "".join(rng.choice(pieces) for _ in range(rng.randint(low, high)))


def random_header_value(rng):
    words = [random_text(rng, list("abcXYZ019-_.:/;=,\"'()*+"), 1, 6) for _ in range(rng.randint(1, 4))]
    value = "".join(w + " " * rng.choice([1, 1, 2, 3, 5]) for w in words).rstrip()
    return " " * rng.choice([0, 0, 1, 2]) + value + " " * rng.choice([0, 0, 1, 3])


def random_request(rng):
    """A random S3 request: (description for the tool, botocore AWSRequest,
    credentials, region). The tool gets the path and query decoded; botocore
    gets them in the URL, encoded by Python's urllib (AWS UriEncode rules)."""
    method = rng.choice(["GET", "GET", "PUT", "PUT", "HEAD", "DELETE", "POST"])
    bucket = rng.choice(["walship", "my-bucket", "b.with.dots"])
    key = random_text(rng, KEY_PIECES, 0, 8)
    path = f"/{bucket}/{key}" if key or rng.random() < 0.5 else f"/{bucket}"
    query = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        name = rng.choice(QUERY_NAMES) if rng.random() < 0.8 else random_text(rng, KEY_PIECES, 1, 3)
        value = rng.choice(["", "", "2", "1000", random_text(rng, KEY_PIECES, 1, 5)])
        query.append((name, value))
        if rng.random() < 0.15:
            query.append((name, random_text(rng, KEY_PIECES, 0, 3)))  # the same name again
    parts = []
    for name, value in query:
        encoded = urllib.parse.quote(name, safe="")
        if value or rng.random() < 0.5:
            encoded += "=" + urllib.parse.quote(value, safe="")
        parts.append(encoded)
    host = rng.choice(["127.0.0.1:9000", "localhost:4568", "s3.example.test", f"{bucket}.s3.example.test"])
    scheme = rng.choice(["http", "https"])
    url = f"{scheme}://{host}{urllib.parse.quote(path, safe='/')}"
    if parts:
        url += "?" + "&".join(parts)

    body = rng.randbytes(rng.randint(0, 64)) if method in ("PUT", "POST") else b""
    request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body)
    request.headers["Host"] = host
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(HEADER_NAMES)
        request.headers[name] = random_header_value(rng)
        if rng.random() < 0.2:
            request.headers[name.upper() if rng.random() < 0.5 else name] = random_header_value(rng)  # given twice
    # Signed payload (the body's SHA-256) or UNSIGNED-PAYLOAD.
    request.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": rng.random() < 0.6})

    token = None
    if rng.random() < 0.35:
        token = "".join(rng.choice(BASE64) for _ in range(rng.randint(16, 300))) + rng.choice(["", "=", "=="])
    credentials = botocore.credentials.Credentials(
        "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        "".join(rng.choice(BASE64) for _ in range(40)), token)
    return request, path, query, credentials, rng.choice(REGIONS)


def sign_with_botocore(request, credentials, region):
    auth = botocore.auth.S3SigV4Auth(credentials, "s3", region)
    with fixed_clock():
        auth.add_auth(request)
    return auth


def tool_input(request, path, query, credentials, region):
    """What walship's signer is given: the request botocore signed, with every
    header it signed (as botocore sent them: names in their case, values raw)."""
    skipped = {"authorization"} | set(botocore.auth.SIGNED_HEADERS_BLACKLIST)
    headers = [[name, value] for name, value in request.headers.items() if name.lower() not in skipped]
    return {
        "method": request.method, "path": path, "query": [list(q) for q in query], "headers": headers,
        "payload_hash": request.headers["X-Amz-Content-SHA256"],
        "access_key_id": credentials.access_key, "secret_access_key": credentials.secret_key,
        "session_token": credentials.token or "", "region": region, "service": "s3", "amz_date": AMZ_DATE,
    }


def run_tool(lines):
    if not os.path.exists(TOOL):
        raise AssertionError(f"{TOOL} is missing: build with scripts/build --tests")
    proc = subprocess.run([TOOL], input="".join(json.dumps(line) + "\n" for line in lines), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"walship-sigv4-tool failed: {proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_botocore_reproduces_the_s3_reference_example(tmp):
    """The harness drives botocore as AWS does: the S3 API Reference's GET
    Object example comes out with its published signature."""
    request = botocore.awsrequest.AWSRequest(method="GET", url="https://examplebucket.s3.amazonaws.com/test.txt")
    request.headers["Range"] = "bytes=0-9"
    request.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": True})
    credentials = botocore.credentials.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    global AMZ_DATE
    saved, AMZ_DATE = AMZ_DATE, "20130524T000000Z"
    try:
        sign_with_botocore(request, credentials, "us-east-1")
    finally:
        AMZ_DATE = saved
    assert request.headers["Authorization"].endswith(
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"), request.headers["Authorization"]


def test_random_requests_sign_exactly_as_botocore_signs_them(tmp):
    rng = random.Random(SEED)
    cases = []
    for _ in range(REQUESTS):
        request, path, query, credentials, region = random_request(rng)
        auth = sign_with_botocore(request, credentials, region)
        cases.append((request, auth, tool_input(request, path, query, credentials, region)))
    outputs = run_tool([c[2] for c in cases])
    assert len(outputs) == len(cases), f"{len(outputs)} answers for {len(cases)} requests"

    mismatches = []
    for (request, auth, given), out in zip(cases, outputs):
        if out["authorization"] != request.headers["Authorization"]:
            mismatches.append((request, auth, given, out))
    for request, auth, given, out in mismatches[:3]:
        with fixed_clock():
            expected_creq = auth.canonical_request(request)
        print(f"request: {json.dumps(given, ensure_ascii=False)}\n"
              f"botocore: {request.headers['Authorization']}\nwalship:  {out['authorization']}\n"
              f"--- botocore's canonical request\n{expected_creq}\n--- walship's\n{out['canonical_request']}\n")
    assert not mismatches, f"{len(mismatches)} of {len(cases)} requests signed differently from botocore"

    # The random requests did reach the cases they are there for.
    blob = json.dumps([c[2] for c in cases], ensure_ascii=False)
    for needle in (" ", "+", "~", "=", "&", "é", "🐘", "//", "X-Amz-Security-Token", "UNSIGNED-PAYLOAD", "  "):
        assert needle in blob, f"no random request holds {needle!r}"
    assert any(not value for c in cases for _, value in c[2]["query"]), "no empty query value"
    print(f"{len(cases)} requests, all signed as botocore signs them")


if __name__ == "__main__":
    run_tests([test_botocore_reproduces_the_s3_reference_example,
               test_random_requests_sign_exactly_as_botocore_signs_them])
