#!/usr/bin/env python3
"""A small Google Cloud Storage JSON API server for walship's tests.

No GCS emulator can be installed on the build machines, so this implements,
as documented by Google, the subset walship uses:

- objects with generations; ifGenerationMatch preconditions (412, 0 = "must
  not exist") on media and resumable uploads
- POST /upload/storage/v1/b/B/o?uploadType=media&name=N
- resumable sessions: POST ...?uploadType=resumable (X-Upload-Content-Length)
  answers a Location; PUT chunks with Content-Range "bytes a-b/total"
  (non-final chunks multiples of 256 KiB) answer 308 with "Range: bytes=0-n",
  "bytes */total" asks the status, the final chunk creates the object
- GET /storage/v1/b/B/o?prefix=&pageToken=&maxResults= (pages of at most
  --page-size items, so every client must follow nextPageToken)
- GET /storage/v1/b/B/o/N?alt=media with Range (206, 416), metadata without alt
- DELETE /storage/v1/b/B/o/N (204, 404)
- errors in Google's shape: {"error": {"code": c, "message": m, "errors": [...]}}
- POST /token: the OAuth 2.0 JWT bearer grant; verifies the assertion's RS256
  signature with the test service account's public key and its iss, aud,
  scope, iat and exp, and issues bearer tokens (checked when --auth is given)
- GET /computeMetadata/v1/instance/service-accounts/default/token with
  Metadata-Flavor: Google, as the GCE metadata server
- workload identity federation, as Google documents it: POST /v1/token, the
  STS token exchange (RFC 8693; form fields grant_type, audience, scope,
  requested_token_type, subject_token, subject_token_type checked; a wrong
  subject token is refused with 400 invalid_grant, another audience with 400
  invalid_target), answering access_token, issued_token_type, token_type and
  expires_in; POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken,
  IAM credentials' impersonation (a bearer STS token with the cloud-platform
  scope; JSON body scope[] and lifetime), answering accessToken and
  expireTime; GET /subject-token, a subject token URL in Azure's shape (JSON
  with access_token) that wants the header "Metadata: True"

Test hooks (not Google's API): POST /_test/fail?count=N&status=S&match=TEXT
makes the next N requests whose path contains TEXT answer S (status 0: the
connection is closed after the request body was read and applied, as when
an answer is lost); GET /_test/stats returns counters; POST
/_test/rotate-subject-token writes a new subject token to DIR/subject-token
and refuses the old one from then on (as Kubernetes rotates its tokens).

--credentials-dir DIR generates a throwaway RSA key and writes
DIR/service-account.json (token_uri pointing here) and, for tests of
rejected credentials, DIR/wrong-service-account.json signed by another key;
and for workload identity federation DIR/subject-token (the subject token)
and three external_account files pointing here: external-account-file.json
(file source, text), external-account-url.json (url source, json format,
headers) and external-account-impersonation.json (file source, then
impersonation of the test service account).
The first line on stdout is "listening on 127.0.0.1:PORT".
"""
import argparse
import base64
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from server_process import serve  # noqa: E402

CHUNK_GRANULARITY = 256 * 1024
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",
          "https://www.googleapis.com/auth/devstorage.full_control",
          "https://www.googleapis.com/auth/cloud-platform")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id-token")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
AUDIENCE = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/walship-test/providers/test"


class Object:
    def __init__(self, data, generation):
        self.data = data
        self.generation = generation


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.buckets = {name: {} for name in args.bucket}
        self.generation = int(time.time() * 1000000)
        self.sessions = {}
        self.tokens = {}  # token -> expiry (time.time())
        self.federated = {}  # STS tokens -> (expiry, scopes)
        self.subject_token = None
        self.credentials_dir = None
        self.public_key = None
        self.client_email = "walship-test@walship-test.iam.gserviceaccount.com"
        self.faults = []  # [match, status, remaining]
        self.stats = {"tokens_issued": 0, "sts_exchanges": 0, "sts_refusals": 0, "impersonations": 0,
                      "subject_token_reads": 0, "list_pages": 0, "media_uploads": 0, "resumable_sessions": 0,
                      "resumable_chunks": 0, "status_queries": 0, "downloads": 0, "deletes": 0,
                      "precondition_failures": 0, "requests": 0}

    def next_generation(self):
        self.generation += 1
        return self.generation


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def write_subject_token(state):
    """A new subject token (an opaque JWT-like string), written atomically;
    the old one is refused from now on."""
    token = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32) + "." + secrets.token_urlsafe(16)
    path = os.path.join(state.credentials_dir, "subject-token")
    with open(path + ".tmp", "w") as f:
        f.write(token + "\n")
    os.replace(path + ".tmp", path)
    with state.lock:
        state.subject_token = token


def make_external_accounts(state, base):
    """The external_account files of workload identity federation, as gcloud
    iam workload-identity-pools create-cred-config writes them."""
    directory = state.credentials_dir
    write_subject_token(state)
    common = {"type": "external_account", "audience": AUDIENCE,
              "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": f"{base}/v1/token"}
    files = {
        "external-account-file.json": {**common, "credential_source": {
            "file": os.path.join(directory, "subject-token"), "format": {"type": "text"}}},
        "external-account-url.json": {**common, "credential_source": {
            "url": f"{base}/subject-token", "headers": {"Metadata": "True"},
            "format": {"type": "json", "subject_token_field_name": "access_token"}}},
        "external-account-impersonation.json": {**common, "credential_source": {
            "file": os.path.join(directory, "subject-token")},
            "service_account_impersonation_url":
                f"{base}/v1/projects/-/serviceAccounts/{state.client_email}:generateAccessToken"},
    }
    for name, doc in files.items():
        with open(os.path.join(directory, name), "w") as f:
            json.dump(doc, f, indent=2)


def make_credentials(directory, token_uri, email):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def key_json(key, key_id):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "walship-test", "private_key_id": key_id,
                "private_key": pem, "client_email": email, "client_id": "1",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri}

    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.makedirs(directory, exist_ok=True)
    for name, key in (("service-account.json", good), ("wrong-service-account.json", wrong)):
        path = os.path.join(directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(key_json(key, secrets.token_hex(20)), f, indent=2)
    return good.public_key()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "walship-gcs-test"

    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("gcs_server: " + (fmt % args) + "\n")

    # ---- plumbing -------------------------------------------------------------
    def send(self, status, body=b"", headers=None, content_type="application/json; charset=UTF-8"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, message, reason="invalid"):
        self.send(status, {"error": {"code": status, "message": message,
                                     "errors": [{"message": message, "domain": "global", "reason": reason}]}})

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < length:
            part = self.rfile.read(length - len(data))
            if not part:
                raise ConnectionError("client closed the connection mid-body")
            data += part
        return data

    def parse(self):
        split = urllib.parse.urlsplit(self.path)
        return split.path, dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))

    def fault(self, path):
        state = self.server.state
        with state.lock:
            for f in state.faults:
                if f[0] in path and f[2] > 0:
                    f[2] -= 1
                    return f[1]
        return None

    def authorized(self, path):
        state = self.server.state
        if not state.args.auth:
            return True
        header = self.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        with state.lock:
            expires = state.tokens.get(token)
        if expires is None or expires < time.time():
            self.error(401, "Invalid Credentials", "authError")
            return False
        return True

    def bucket(self, name, permission):
        state = self.server.state
        if name in state.args.forbidden_bucket:
            self.error(403, f"{state.client_email} does not have {permission} access to the Google Cloud "
                            f"Storage bucket. Permission '{permission}' denied on resource (or it may not exist).",
                       "forbidden")
            return None
        objects = state.buckets.get(name)
        if objects is None:
            self.error(404, "The specified bucket does not exist.", "notFound")
        return objects

    # ---- dispatch --------------------------------------------------------------
    def handle_any(self):
        path, query = self.parse()
        state = self.server.state
        with state.lock:
            state.stats["requests"] += 1
        try:
            body = self.read_body() if self.command in ("POST", "PUT") else b""
        except ConnectionError:
            self.close_connection = True
            return
        if path.startswith("/_test/"):
            return self.test_hook(path, query)
        injected = self.fault(self.path)
        if injected is not None and injected != 0:
            return self.error(injected, "injected failure", "backendError")
        drop = injected == 0
        if path == "/token" and self.command == "POST":
            return self.token(body)
        if path == "/v1/token" and self.command == "POST":
            return self.sts_token(body)
        if path.startswith("/v1/projects/-/serviceAccounts/") and path.endswith(":generateAccessToken") \
                and self.command == "POST":
            return self.generate_access_token(urllib.parse.unquote(path.split("/")[-1].rsplit(":", 1)[0]), body)
        if path == "/subject-token" and self.command == "GET":
            return self.subject_token_url()
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            return self.metadata_token()
        parts = path.split("/")
        # /storage/v1/b/B/o[/NAME]  or  /upload/storage/v1/b/B/o
        if len(parts) >= 6 and parts[2] == "storage" and parts[1] == "upload" and parts[3] == "v1" \
                and parts[4] == "b" and parts[6:7] == ["o"]:
            if not self.authorized(path):
                return
            return self.upload(urllib.parse.unquote(parts[5]), query, body, drop)
        if len(parts) >= 6 and parts[1] == "storage" and parts[2] == "v1" and parts[3] == "b" and parts[5] == "o":
            if not self.authorized(path):
                return
            bucket = urllib.parse.unquote(parts[4])
            if len(parts) == 6:
                if self.command == "GET":
                    return self.list(bucket, query)
            else:
                name = urllib.parse.unquote("/".join(parts[6:]))
                if self.command == "GET":
                    return self.get(bucket, name, query)
                if self.command == "DELETE":
                    return self.delete(bucket, name, query)
        self.error(404, f"Not Found: {self.command} {path}", "notFound")

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def test_hook(self, path, query):
        state = self.server.state
        if path == "/_test/fail":
            with state.lock:
                state.faults.append([query.get("match", ""), int(query.get("status", "503")),
                                     int(query.get("count", "1"))])
            return self.send(200, {})
        if path == "/_test/stats":
            with state.lock:
                return self.send(200, dict(state.stats))
        if path == "/_test/rotate-subject-token":
            write_subject_token(state)
            return self.send(200, {})
        self.error(404, "unknown test hook")

    # ---- OAuth ------------------------------------------------------------------
    def issue_token(self):
        state = self.server.state
        token = "ya29.test-" + secrets.token_urlsafe(24)
        with state.lock:
            state.tokens[token] = time.time() + state.args.token_lifetime
            state.stats["tokens_issued"] += 1
        self.send(200, {"access_token": token, "expires_in": state.args.token_lifetime, "token_type": "Bearer"})

    def token(self, body):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        state = self.server.state
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))

        def bad(error, description, status=400):
            self.send(status, {"error": error, "error_description": description})

        if form.get("grant_type") != JWT_BEARER:
            return bad("unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            return bad("invalid_request", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError:
            return bad("invalid_request", "Invalid JWT: malformed")
        if header.get("alg") != "RS256":
            return bad("invalid_grant", "Invalid JWT: alg must be RS256")
        try:
            state.public_key.verify(signature, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(),
                                    hashes.SHA256())
        except InvalidSignature:
            return bad("invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        token_uri = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        if claims.get("iss") != state.client_email:
            return bad("invalid_grant", "Invalid JWT: iss is not the service account")
        if claims.get("aud") != token_uri:
            return bad("invalid_grant", f"Invalid JWT: aud must be {token_uri}")
        if not any(s in str(claims.get("scope", "")).split() for s in SCOPES):
            return bad("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or iat > now + 60 or exp < now \
                or exp - iat > 3600 or iat < now - 3600:
            return bad("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                                        "reasonable timeframe. Check your iat and exp values in the JWT claim.")
        self.issue_token()

    # ---- workload identity federation ---------------------------------------------
    def sts_token(self, body):
        """Google's STS: https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token"""
        state = self.server.state
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

        def bad(error, description):
            with state.lock:
                state.stats["sts_refusals"] += 1
            self.send(400, {"error": error, "error_description": description})

        if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return bad("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        if form.get("grant_type") != TOKEN_EXCHANGE:
            return bad("unsupported_grant_type", "Invalid value for \"grant_type\".")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return bad("invalid_request", "Invalid value for \"requested_token_type\".")
        if form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            return bad("invalid_request", "Invalid value for \"subject_token_type\".")
        if form.get("audience") != AUDIENCE:
            return bad("invalid_target", "The target service indicated by the \"audience\" parameters is invalid. "
                                         "This might either be because the pool or provider is disabled or deleted "
                                         "or because it doesn't exist.")
        scopes = form.get("scope", "").split()
        if not scopes or any(s not in SCOPES for s in scopes):
            return bad("invalid_scope", "Invalid value for \"scope\".")
        with state.lock:
            good = state.subject_token is not None and form.get("subject_token") == state.subject_token
        if not good:
            return bad("invalid_grant", "The given subject token is invalid or has expired.")
        token = "ya29.sts-" + secrets.token_urlsafe(24)
        with state.lock:
            expiry = time.time() + state.args.token_lifetime
            state.tokens[token] = expiry
            state.federated[token] = (expiry, scopes)
            state.stats["sts_exchanges"] += 1
        self.send(200, {"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer",
                        "expires_in": state.args.token_lifetime})

    def generate_access_token(self, email, body):
        """IAM credentials: projects.serviceAccounts.generateAccessToken."""
        state = self.server.state

        def bad(status, message, code):
            self.send(status, {"error": {"code": status, "message": message, "status": code}})

        header = self.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        with state.lock:
            federated = state.federated.get(token)
        if federated is None or federated[0] < time.time():
            return bad(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                            "login cookie or other valid authentication credential.", "UNAUTHENTICATED")
        if CLOUD_PLATFORM not in federated[1]:
            return bad(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED")
        if email != state.client_email:
            return bad(404, f"Not found; Gaia id not found for email {email}", "NOT_FOUND")
        try:
            request = json.loads(body)
        except ValueError:
            return bad(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        scopes = request.get("scope") if isinstance(request, dict) else None
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            return bad(400, "Scope required.", "INVALID_ARGUMENT")
        lifetime = state.args.token_lifetime
        if "lifetime" in request:
            text = str(request["lifetime"])
            if not text.endswith("s") or not text[:-1].isdigit() or int(text[:-1]) > 3600:
                return bad(400, "The lifetime is invalid.", "INVALID_ARGUMENT")
            lifetime = min(lifetime, int(text[:-1]))
        issued = "ya29.sa-" + secrets.token_urlsafe(24)
        expiry = time.time() + lifetime
        with state.lock:
            state.tokens[issued] = expiry
            state.stats["impersonations"] += 1
            state.stats["tokens_issued"] += 1
        self.send(200, {"accessToken": issued,
                        "expireTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expiry)))})

    def subject_token_url(self):
        """A subject token URL in Azure's shape (the instance metadata's managed identity token)."""
        state = self.server.state
        if self.headers.get("Metadata") != "True":
            return self.send(400, {"error": "invalid_request", "error_description": "Required metadata header "
                                                                                     "not specified"})
        with state.lock:
            state.stats["subject_token_reads"] += 1
            subject = state.subject_token
        self.send(200, {"access_token": subject, "expires_in": "3599", "token_type": "Bearer"})

    def metadata_token(self):
        if self.headers.get("Metadata-Flavor") != "Google":
            return self.send(403, b"Missing Metadata-Flavor:Google header.", content_type="text/html")
        self.issue_token()

    # ---- objects ----------------------------------------------------------------
    def resource(self, bucket, name, obj):
        return {"kind": "storage#object", "id": f"{bucket}/{name}/{obj.generation}", "name": name,
                "bucket": bucket, "generation": str(obj.generation), "metageneration": "1",
                "size": str(len(obj.data)), "contentType": "application/octet-stream"}

    def precondition_ok(self, objects, name, query):
        match = query.get("ifGenerationMatch")
        if match is None:
            return True
        obj = objects.get(name)
        current = obj.generation if obj is not None else 0
        return int(match) == current

    def create(self, bucket, objects, name, data, query):
        state = self.server.state
        with state.lock:
            if not self.precondition_ok(objects, name, query):
                state.stats["precondition_failures"] += 1
                return None
            obj = Object(data, state.next_generation())
            objects[name] = obj
            return obj

    def upload(self, bucket_name, query, body, drop):
        state = self.server.state
        objects = self.bucket(bucket_name, "storage.objects.create")
        if objects is None:
            return
        kind = query.get("uploadType")
        if self.command == "POST" and kind == "media":
            name = query.get("name")
            if not name:
                return self.error(400, "Required parameter: name", "required")
            with state.lock:
                state.stats["media_uploads"] += 1
            obj = self.create(bucket_name, objects, name, body, query)
            if drop:
                self.close_connection = True
                return
            if obj is None:
                return self.error(412, "At least one of the pre-conditions you specified did not hold.",
                                  "conditionNotMet")
            return self.send(200, self.resource(bucket_name, name, obj))
        if self.command == "POST" and kind == "resumable":
            name = query.get("name")
            if not name:
                return self.error(400, "Required parameter: name", "required")
            total = self.headers.get("X-Upload-Content-Length")
            session = secrets.token_urlsafe(16)
            with state.lock:
                state.stats["resumable_sessions"] += 1
                state.sessions[session] = {"bucket": bucket_name, "name": name, "data": bytearray(),
                                           "total": int(total) if total else None, "query": query, "done": None}
            host = f"127.0.0.1:{self.server.server_address[1]}"
            location = (f"http://{host}/upload/storage/v1/b/{urllib.parse.quote(bucket_name, safe='')}/o"
                        f"?uploadType=resumable&name={urllib.parse.quote(name, safe='')}&upload_id={session}")
            return self.send(200, b"", {"Location": location, "X-GUploader-UploadID": session})
        if self.command == "PUT" and kind == "resumable":
            return self.resumable_put(query.get("upload_id"), body, drop)
        self.error(400, f"Unsupported uploadType '{kind}' for {self.command}", "invalid")

    def resumable_put(self, session_id, body, drop):
        state = self.server.state
        with state.lock:
            session = state.sessions.get(session_id)
        if session is None:
            return self.error(404, "No such upload session", "notFound")
        content_range = self.headers.get("Content-Range", "")
        if not content_range.startswith("bytes "):
            return self.error(400, "Missing Content-Range", "invalid")
        spec, _, total_text = content_range[len("bytes "):].partition("/")
        total = None if total_text == "*" else int(total_text)
        if session["total"] is not None and total is not None and total != session["total"]:
            return self.error(400, "Content-Range total does not match X-Upload-Content-Length", "invalid")

        def incomplete():
            persisted = len(session["data"])
            headers = {"Range": f"bytes=0-{persisted - 1}"} if persisted else {}
            return self.send(308, b"", headers, content_type="text/plain")

        if session["done"] is not None:
            obj = session["done"]
            if obj == "precondition":
                return self.error(412, "At least one of the pre-conditions you specified did not hold.",
                                  "conditionNotMet")
            return self.send(200, self.resource(session["bucket"], session["name"], obj))
        if spec == "*":
            with state.lock:
                state.stats["status_queries"] += 1
            return incomplete()
        first, _, last = spec.partition("-")
        first, last = int(first), int(last)
        if last - first + 1 != len(body):
            return self.error(400, "Content-Range does not match the body length", "invalid")
        with state.lock:
            state.stats["resumable_chunks"] += 1
            persisted = len(session["data"])
            if first > persisted:
                bad_offset = True
            else:
                bad_offset = False
                session["data"] += body[persisted - first:]
        if bad_offset:
            return self.error(400, f"Invalid request: chunk starts at {first}, {persisted} bytes persisted", "invalid")
        final = total is not None and len(session["data"]) == total
        if not final and len(body) % CHUNK_GRANULARITY != 0:
            return self.error(400, "Invalid request. The chunk size must be a multiple of 256 KiB.", "invalid")
        if final:
            objects = state.buckets[session["bucket"]]
            obj = self.create(session["bucket"], objects, session["name"], bytes(session["data"]), session["query"])
            session["done"] = obj if obj is not None else "precondition"
            if drop:
                self.close_connection = True
                return
            if obj is None:
                return self.error(412, "At least one of the pre-conditions you specified did not hold.",
                                  "conditionNotMet")
            return self.send(200, self.resource(session["bucket"], session["name"], obj))
        if drop:
            self.close_connection = True
            return
        return incomplete()

    def list(self, bucket_name, query):
        state = self.server.state
        objects = self.bucket(bucket_name, "storage.objects.list")
        if objects is None:
            return
        prefix = query.get("prefix", "")
        page = state.args.page_size
        if "maxResults" in query:
            page = max(1, min(page, int(query["maxResults"])))
        after = b64url_decode(query["pageToken"]).decode() if query.get("pageToken") else None
        with state.lock:
            state.stats["list_pages"] += 1
            names = sorted(n for n in objects if n.startswith(prefix) and (after is None or n > after))
            items = [self.resource(bucket_name, n, objects[n]) for n in names[:page]]
        result = {"kind": "storage#objects"}
        if items:
            result["items"] = items
        if len(names) > page:
            result["nextPageToken"] = base64.urlsafe_b64encode(items[-1]["name"].encode()).decode().rstrip("=")
        self.send(200, result)

    def get(self, bucket_name, name, query):
        state = self.server.state
        objects = self.bucket(bucket_name, "storage.objects.get")
        if objects is None:
            return
        with state.lock:
            obj = objects.get(name)
        if obj is None:
            return self.error(404, f"No such object: {bucket_name}/{name}", "notFound")
        if query.get("alt") != "media":
            return self.send(200, self.resource(bucket_name, name, obj))
        with state.lock:
            state.stats["downloads"] += 1
        data = obj.data
        headers = {"X-Goog-Generation": str(obj.generation)}
        range_header = self.headers.get("Range")
        if range_header:
            spec = range_header.removeprefix("bytes=")
            first_text, _, last_text = spec.partition("-")
            first = int(first_text)
            last = int(last_text) if last_text else len(data) - 1
            if first >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self.error(416, "Request range not satisfiable", "requestedRangeNotSatisfiable")
            last = min(last, len(data) - 1)
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return self.send(206, data[first:last + 1], headers, content_type="application/octet-stream")
        self.send(200, data, headers, content_type="application/octet-stream")

    def delete(self, bucket_name, name, query):
        state = self.server.state
        objects = self.bucket(bucket_name, "storage.objects.delete")
        if objects is None:
            return
        with state.lock:
            state.stats["deletes"] += 1
            if not self.precondition_ok(objects, name, query) and name in objects:
                return self.error(412, "At least one of the pre-conditions you specified did not hold.",
                                  "conditionNotMet")
            existed = objects.pop(name, None) is not None
        if not existed:
            return self.error(404, f"No such object: {bucket_name}/{name}", "notFound")
        self.send(204)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bucket", action="append", default=[], help="a bucket that exists (repeatable)")
    parser.add_argument("--forbidden-bucket", action="append", default=[], help="answers 403 (repeatable)")
    parser.add_argument("--page-size", type=int, default=3)
    parser.add_argument("--auth", action="store_true", help="require bearer tokens this server issued")
    parser.add_argument("--credentials-dir", help="write throwaway service-account keys here")
    parser.add_argument("--token-lifetime", type=int, default=3600)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = state
    port = server.server_address[1]
    if args.credentials_dir:
        state.public_key = make_credentials(args.credentials_dir, f"http://127.0.0.1:{port}/token",
                                            state.client_email)
        state.credentials_dir = args.credentials_dir
        make_external_accounts(state, f"http://127.0.0.1:{port}")
    serve(server, port)


if __name__ == "__main__":
    main()
