"""The fully static walship (scripts/build-static) runs with nothing around it.

- it is statically linked (`file`, `ldd`), stripped, and says so in `version`;
- it carries Debian's CA bundle, for images without one;
- in an empty root (only the binary, /etc/hosts and /etc/resolv.conf; entered
  with chroot as root, else with an unprivileged user namespace) it
  snapshots, lists and restores a database on the filesystem backend, and
  the restored bytes equal the source;
- `serve-replica --http 127.0.0.1:PORT` binds and answers /healthz and
  /metrics there: --http takes numeric addresses, which need no NSS;
- the same over HTTPS (gs:// against the GCS test server behind a TLS proxy
  with a throwaway CA): mbedTLS works there, SSL_CERT_FILE is honoured, and
  without it the compiled-in bundle refuses the unknown CA;
- with the argument `s3` (a CTest test of its own): the same against s3rver
  over HTTP, when this walship has the s3:// backend and s3rver is installed
  (tests/s3/s3rver_server.js over .deps/s3rver, as the S3 branch's setup
  installs it, or an s3rver on PATH); otherwise SKIPPED, never passed.

$WALSHIP_STATIC names the binary (default build-static/dist/walship); the
whole test is skipped when it has not been built.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import SOURCE, STATIC, Skipped, check_rows, checkpointed_bytes, create_db, run_tests, skip  # noqa: E402

BINARY = STATIC


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def make_root(tmp):
    """An empty root: the binary, /etc/hosts, /etc/resolv.conf and a data folder."""
    root = os.path.join(tmp, "root")
    os.makedirs(f"{root}/etc")
    os.makedirs(f"{root}/data")
    shutil.copy2(BINARY, f"{root}/walship")
    for name in ("hosts", "resolv.conf"):
        if os.path.exists(f"/etc/{name}"):
            shutil.copy(f"/etc/{name}", f"{root}/etc/{name}")
    return root


def enter_prefix(root):
    """The command prefix that runs a program inside `root`, or raises Skipped."""
    candidates = []
    if os.geteuid() == 0 and shutil.which("chroot"):
        candidates.append([shutil.which("chroot"), root])
    if shutil.which("unshare"):
        candidates.append([shutil.which("unshare"), "--user", "--map-root-user", f"--root={root}"])
    reasons = []
    for prefix in candidates:
        r = run([*prefix, "/walship", "version"])
        if r.returncode == 0:
            return prefix
        reasons.append(f"{' '.join(prefix[:-1])}: {r.stderr.strip()}")
    raise Skipped("cannot enter an empty root here (needs root for chroot, or unprivileged user namespaces): "
                  + ("; ".join(reasons) or "neither chroot nor unshare is installed"))


def in_root(prefix, *args, env=None, check=0):
    # The environment of a bare container: no HOME, no USER, a minimal PATH.
    base = {"PATH": "/", "LANG": "C"}
    base.update(env or {})
    r = run([*prefix, "/walship", *args], env=base)
    if check is not None and r.returncode != check:
        raise AssertionError(f"walship {' '.join(args)} in the empty root: exit {r.returncode}\n"
                             f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
    return r


def test_statically_linked(tmp):
    info = run(["file", "-b", BINARY]).stdout
    assert "statically linked" in info, info
    assert "stripped" in info and "not stripped" not in info, info
    ldd = run(["ldd", BINARY])
    assert "not a dynamic executable" in (ldd.stdout + ldd.stderr), ldd.stdout + ldd.stderr
    version = run([BINARY, "version"])
    assert version.returncode == 0 and "; static)" in version.stdout, version.stdout + version.stderr


def test_no_nss_openssl_ldap_idn_psl(tmp):
    """Nothing that needs glibc's NSS at run time (user and host lookups: the
    sftp backend reads /etc/passwd itself, DNS goes through c-ares), and none
    of the libraries the static build leaves out."""
    unstripped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(BINARY))), "walship")
    if not os.path.exists(unstripped):
        raise Skipped(f"{unstripped} (the unstripped binary) is not there")
    symbols = set()
    for line in run(["nm", unstripped]).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            symbols.add(parts[-1])
    # getaddrinfo (and the gethostbyname*_r it pulls in from glibc) is linked
    # for serve-replica's --http listener: cpp-httplib binds through it, and
    # --http takes IP addresses only, which glibc parses without NSS. Host
    # names go through c-ares everywhere else.
    nss = {"getpwuid", "getpwuid_r", "getpwnam", "getpwnam_r", "gethostbyname", "getgrnam", "getgrgid",
           "getlogin"} & symbols
    assert not nss, f"NSS lookups linked in: {sorted(nss)}"
    left_out = sorted(s for s in symbols if s.startswith(("SSL_CTX_", "OPENSSL_", "ldap_", "idn2_", "psl_")))
    assert not left_out, f"OpenSSL/LDAP/IDN/PSL symbols linked in: {left_out[:10]}"
    assert "mbedtls_ssl_handshake" in symbols and "ares_getaddrinfo" in symbols and "libssh2_session_init_ex" in symbols


def test_ca_bundle_compiled_in(tmp):
    with open(BINARY, "rb") as f:
        certificates = f.read().count(b"-----BEGIN CERTIFICATE-----")
    assert certificates >= 100, f"only {certificates} certificates in the binary"


def snapshot_restore(prefix, root, url, env=None):
    create_db(f"{root}/data/app.db", rows=3000)
    r = in_root(prefix, "snapshot", "/data/app.db", url, env=env)
    assert "snapshot 0000000000000001" in r.stdout, r.stdout + r.stderr
    r = in_root(prefix, "ls", url, "--json", env=env)
    assert '"txid"' in r.stdout, r.stdout + r.stderr
    in_root(prefix, "restore", url, "-o", "/data/restored.db", env=env)
    with open(f"{root}/data/restored.db", "rb") as f:
        assert f.read() == checkpointed_bytes(f"{root}/data/app.db"), "restored bytes differ from the source"
    check_rows(f"{root}/data/restored.db", 3000)


def test_empty_root_filesystem(tmp):
    root = make_root(tmp)
    prefix = enter_prefix(root)
    snapshot_restore(prefix, root, "file:///replica")
    assert os.path.isdir(f"{root}/replica/snapshots"), os.listdir(f"{root}/replica")


def test_empty_root_serve_replica_http(tmp):
    """serve-replica follows a replica in the empty root and serves /readyz,
    /healthz and /metrics on a numeric address: the bind needs no NSS (no
    /etc/nsswitch.conf, no libnss_*.so there)."""
    root = make_root(tmp)
    prefix = enter_prefix(root)
    create_db(f"{root}/data/app.db", rows=100)
    in_root(prefix, "snapshot", "/data/app.db", "file:///replica")
    port = free_port()
    proc = subprocess.Popen([*prefix, "/walship", "serve-replica", "--http", f"127.0.0.1:{port}", "file:///replica",
                             "/data/follow.db"], env={"PATH": "/", "LANG": "C"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    status, body = r.status, json.loads(r.read())
                if status == 200:
                    break
            except urllib.error.HTTPError as e:  # 503 until the restore is whole and followed
                if e.code != 503:
                    raise
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"no ready /readyz from the empty root: {proc.stderr.read() if proc.poll() is not None else 'timed out'}")
            time.sleep(0.2)
        assert body["databases"][0]["db"] == "/data/follow.db" and body["databases"][0]["txid"] == "0000000000000001", body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert 'walship_applied_txid{db="/data/follow.db"} 1' in r.read().decode()
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read()
    check_rows(f"{root}/data/follow.db", 100)


def make_tls_files(directory):
    """A throwaway CA and a certificate it signs for localhost and 127.0.0.1."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "walship test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            # mbedTLS 2.28 matches DNS names only, so the server is reached as
            # "localhost" (which also has c-ares read the root's /etc/hosts).
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(f"{directory}/ca.pem", "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(f"{directory}/server.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


class TlsProxy:
    """Terminates TLS on a free port and relays each connection to a plain one."""

    def __init__(self, cert_file, target_port):
        import ssl
        import threading
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file)
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))  # localhost may resolve to ::1 first: curl then tries 127.0.0.1
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import threading
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        import threading
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))

        def pump(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, tls), daemon=True).start()
        pump(tls, upstream)

    def close(self):
        self.listener.close()


def test_empty_root_https(tmp):
    """gs:// over HTTPS (the GCS test server behind a TLS proxy): mbedTLS works
    in the empty root, a CA given by SSL_CERT_FILE or found at the system's
    bundle path is trusted, and without either the compiled-in bundle is what
    verifies the server (so this test CA is refused as unknown, not for a
    missing CA file)."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise Skipped("python3-cryptography is not installed (scripts/setup)")
    root = make_root(tmp)
    prefix = enter_prefix(root)
    make_tls_files(tmp)
    shutil.copy(f"{tmp}/ca.pem", f"{root}/ca.pem")
    server = subprocess.Popen([sys.executable, os.path.join(SOURCE, "tests", "gcs_server", "gcs_server.py"),
                               "--bucket", "walship"], stdout=subprocess.PIPE, text=True)
    proxy = None
    try:
        line = server.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        proxy = TlsProxy(f"{tmp}/server.pem", int(line.strip().rsplit(":", 1)[1]))
        emulator = {"STORAGE_EMULATOR_HOST": f"https://localhost:{proxy.port}"}
        snapshot_restore(prefix, root, "gs://walship/app", env={**emulator, "SSL_CERT_FILE": "/ca.pem"})
        # A system bundle where Debian keeps it is used when there is one...
        os.makedirs(f"{root}/etc/ssl/certs")
        shutil.copy(f"{tmp}/ca.pem", f"{root}/etc/ssl/certs/ca-certificates.crt")
        in_root(prefix, "ls", "gs://walship/app", env=emulator)
        # ... and without one the compiled-in bundle, which does not know this CA.
        shutil.rmtree(f"{root}/etc/ssl")
        r = in_root(prefix, "ls", "gs://walship/app", env=emulator, check=1)
        assert "certificate" in r.stderr.lower() or "peer" in r.stderr.lower(), r.stderr
        assert "ca cert" not in r.stderr.lower() and "cafile" not in r.stderr.lower(), r.stderr
    finally:
        if proxy:
            proxy.close()
        server.terminate()
        server.wait(timeout=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_server_command(directory, port):
    """The S3 test server: tests/s3/s3rver_server.js over .deps/s3rver (what
    scripts/setup installs with the s3:// backend), else a plain s3rver."""
    wrapper = os.path.join(SOURCE, "tests", "s3", "s3rver_server.js")
    if os.path.exists(wrapper) and shutil.which("node") and os.path.isdir(os.path.join(SOURCE, ".deps", "s3rver")):
        return [shutil.which("node"), wrapper, "--directory", directory, "--port", str(port), "--bucket", "walship",
                "--access-key-id", "WALSHIPTEST", "--secret-access-key", "walship-test-secret"]
    for candidate in (os.path.join(SOURCE, ".deps", "s3rver", "node_modules", ".bin", "s3rver"),
                      os.path.join(SOURCE, "node_modules", ".bin", "s3rver"), shutil.which("s3rver")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate, "--address", "127.0.0.1", "--port", str(port), "--directory", directory,
                    "--configure-bucket", "walship", "--silent"]
    return None


def test_empty_root_s3(tmp):
    probe = run([BINARY, "ls", "s3://walship/probe"])
    if "not built into this walship" in probe.stderr:
        raise Skipped("this walship has no s3:// backend yet")
    port = free_port()
    os.makedirs(f"{tmp}/s3")
    command = s3_server_command(f"{tmp}/s3", port)
    if command is None:
        raise Skipped("s3rver is not installed (scripts/setup installs it into .deps/s3rver)")
    root = make_root(tmp)
    prefix = enter_prefix(root)
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"the S3 test server did not start: {server.stderr.read().decode()}")
                time.sleep(0.2)
        # s3rver's plain CLI takes the S3RVER key pair; the wrapper the one it was given.
        key, secret = ("WALSHIPTEST", "walship-test-secret") if "--access-key-id" in command else ("S3RVER", "S3RVER")
        env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1"}
        snapshot_restore(prefix, root, f"s3://walship/app?endpoint=http://127.0.0.1:{port}&path-style=true",
                         env=env)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main():
    if not os.path.exists(BINARY):
        skip(f"{BINARY} is not built (scripts/build-static)")
    # `s3` as the argument runs the s3 half alone, so CTest reports it as its
    # own test (skipped until the backend and s3rver are there).
    if sys.argv[1:] == ["s3"]:
        tests = (test_empty_root_s3,)
    else:
        tests = (test_statically_linked, test_no_nss_openssl_ldap_idn_psl, test_ca_bundle_compiled_in,
                 test_empty_root_filesystem, test_empty_root_serve_replica_http,
                 test_empty_root_https)
    run_tests(tests)


if __name__ == "__main__":
    main()
