#!/usr/bin/env python3
"""A throwaway OpenSSH sshd on 127.0.0.1 for walship's SFTP tests.

Everything lives in one directory: an ed25519 host key, a user key (with
authorized_keys), a known_hosts naming the host key for [127.0.0.1]:PORT and
an sshd_config (StrictModes no, UsePAM no, internal-sftp, only the current
user, only public keys). sshd runs as the current user (root in CI) with
-D, so it is ours to stop; Sshd.kill() also ends the per-connection
children, as a crash or a reboot of the host would.

As a program (used by the C++ conformance fixture): starts one, prints
"listening on 127.0.0.1:PORT DIR" once it accepts connections, and stops it
on SIGTERM.
"""
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from walship_test import children_of  # noqa: E402

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen")


def available():
    """None when sshd and ssh-keygen can run here, else the reason they cannot."""
    if not os.path.isfile(SSHD) or not os.access(SSHD, os.X_OK):
        return "OpenSSH sshd is not installed (scripts/setup installs openssh-server)"
    if not SSH_KEYGEN:
        return "ssh-keygen is not installed (scripts/setup installs openssh-client)"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path, comment, kind="ed25519", passphrase=""):
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", passphrase, "-C", comment, "-f", path], check=True)


class Sshd:
    def __init__(self, directory=None, port=None, read_only=False, extra_host_keys=()):
        self.dir = directory or tempfile.mkdtemp(prefix="walship-sshd-")
        self.port = port or free_port()
        self.user = getpass.getuser()
        self.proc = None
        self.host_key = os.path.join(self.dir, "host_ed25519")
        self.user_key = os.path.join(self.dir, "id_ed25519")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.config = os.path.join(self.dir, "sshd_config")
        keygen(self.host_key, "walship-test-host")
        # More host keys (e.g. "ecdsa", "rsa") that known_hosts does not list.
        self.extra_host_keys = []
        for kind in extra_host_keys:
            path = os.path.join(self.dir, f"host_{kind}")
            keygen(path, f"walship-test-host-{kind}", kind=kind)
            self.extra_host_keys.append(path)
        keygen(self.user_key, "walship-test-user")
        shutil.copy(self.user_key + ".pub", os.path.join(self.dir, "authorized_keys"))
        with open(self.host_key + ".pub") as f:
            kind, key = f.read().split()[:2]
        with open(self.known_hosts, "w") as f:
            f.write(f"[127.0.0.1]:{self.port} {kind} {key}\n")
        with open(self.config, "w") as f:
            f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
{"".join(f"HostKey {k}{chr(10)}" for k in self.extra_host_keys)}PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.dir}/authorized_keys
AllowUsers {self.user}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp{" -R" if read_only else ""}
LogLevel ERROR
""")
        # sshd checks for its privilege-separation directory even when it
        # never changes user; a fresh container has none.
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    def start(self):
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "sshd.log"), "ab"))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                with open(os.path.join(self.dir, "sshd.log")) as f:
                    raise RuntimeError(f"sshd exited with {self.proc.returncode}: {f.read()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sshd did not start listening")

    def kill(self):
        """Ends sshd and every connection it serves at once (SIGKILL)."""
        if self.proc is None:
            return
        for pid in children_of(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def url(self, path, options=True):
        url = f"sftp://{self.user}@127.0.0.1:{self.port}{path}"
        if options:
            url += f"?key={self.user_key}&known-hosts={self.known_hosts}"
        return url

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def main():
    reason = available()
    if reason:
        print(f"unavailable: {reason}", flush=True)
        sys.exit(77)
    sshd = Sshd().start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print(f"listening on 127.0.0.1:{sshd.port} {sshd.dir}", flush=True)
    try:
        while not stop:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sshd.close()


if __name__ == "__main__":
    main()
