"""Starts tests/s3/s3rver_server.js (s3rver with SigV4 verification,
conditional writes and AbortMultipartUpload) for the Python tests, and a
small independent SigV4 client to put objects behind walship's back.

A missing node or s3rver skips the test (exit 77): scripts/setup installs them.
"""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import skip  # noqa: E402

SERVER = os.path.join(HERE, "s3rver_server.js")
S3RVER = os.path.join(os.environ.get("WALSHIP_SOURCE_DIR", os.path.join(HERE, "..", "..")), ".deps", "s3rver",
                      "node_modules", "s3rver", "package.json")

ACCESS_KEY_ID = "AKIDWALSHIPTEST"
SECRET_ACCESS_KEY = "walship/test+secret"


def require_s3rver():
    if shutil.which("node") is None:
        skip("node is not installed (scripts/setup installs it)")
    if not os.path.exists(S3RVER):
        skip(f"s3rver is not installed in {os.path.dirname(os.path.dirname(S3RVER))} (run scripts/setup)")


def make_tls_files(directory):
    """A self-signed CA certificate for 127.0.0.1 and localhost and its key;
    returns (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "walship test S3")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class S3rver:
    """s3rver on 127.0.0.1 serving `buckets` from `directory`; restartable on
    the same port and directory. With `tls`, over HTTPS with a self-signed
    certificate (self.ca_file)."""

    def __init__(self, directory, buckets=("walship",), extra=(), port=0, tls=False):
        self.directory = directory
        self.buckets = buckets
        self.extra = list(extra)
        self.port = port
        self.proc = None
        self.ca_file = None
        if tls:
            self.ca_file, key_file = make_tls_files(os.path.join(directory + "-tls"))
            self.extra += ["--tls-cert", self.ca_file, "--tls-key", key_file]
        self.start()

    def start(self):
        args = ["node", SERVER, "--directory", self.directory, "--port", str(self.port),
                "--access-key-id", ACCESS_KEY_ID, "--secret-access-key", SECRET_ACCESS_KEY]
        for bucket in self.buckets:
            args += ["--bucket", bucket]
        self.proc = subprocess.Popen(args + self.extra, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("s3rver listening on "), line
        self.address = line.split()[-1].strip()
        self.port = int(self.address.rsplit(":", 1)[1])
        self.endpoint = f"{'https' if self.ca_file else 'http'}://{self.address}"

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stats(self):
        with urllib.request.urlopen(f"{self.endpoint}/_walship/stats") as r:
            return json.load(r)

    def leftover_uploads(self):
        """Multipart uploads neither completed nor aborted, over every bucket."""
        found = []
        for root, dirs, _files in os.walk(self.directory):
            if os.path.basename(root) == "._S3rver_uploads":
                found += [os.path.join(root, d) for d in dirs]
        return found


def _sign(method, host, path, query, headers, body, region="us-east-1"):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {**headers, "host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    names = sorted(k.lower() for k in headers)
    canonical_headers = "".join(f"{k.lower()}:{' '.join(str(v).split())}\n" for k, v in
                                sorted(headers.items(), key=lambda kv: kv[0].lower()))
    canonical_query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                               for k, v in sorted(query))
    creq = "\n".join([method, path, canonical_query, canonical_headers, ";".join(names), payload_hash])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + SECRET_ACCESS_KEY).encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers


class Client:
    """A minimal path-style S3 client on one kept-alive connection."""

    def __init__(self, server):
        self.host = server.address
        self.conn = http.client.HTTPConnection(self.host, timeout=30)

    def request(self, method, bucket, key="", body=b"", query=()):
        path = "/" + bucket + ("/" + urllib.parse.quote(key, safe="/-_.~") if key else "")
        headers = _sign(method, self.host, path, list(query), {}, body)
        url = path + ("?" + urllib.parse.urlencode(list(query), quote_via=urllib.parse.quote) if query else "")
        self.conn.request(method, url, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        assert 200 <= response.status < 300, f"{method} {url}: HTTP {response.status}: {data[:300]!r}"
        return data

    def put(self, bucket, key, body):
        self.request("PUT", bucket, key, body)

    def get(self, bucket, key):
        return self.request("GET", bucket, key)

    def close(self):
        self.conn.close()
