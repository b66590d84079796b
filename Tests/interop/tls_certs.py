"""Test PKI for the TLS interop tests, made with the `openssl` command line.

    certs = tls_certs.make_certs(directory)   # -> TLSCerts (paths of PEM files)

makes, in `directory`:

* a CA (`ca_cert`, `ca_key`; CN "Weft Test CA");
* `server_cert`/`server_key`: CN=localhost, SAN DNS:localhost, IP:127.0.0.1,
  serverAuth, signed by the CA, valid from a minute ago for 30 days;
* `server2_cert`/`server2_key`: the same names with a new key, another serial
  and another expiry (45 days): what a certificate reload swaps in;
* `expired_server_cert`/`expired_server_key`: the same names, valid only in
  January 2020;
* `client_cert`/`client_key`: CN=worker-1, clientAuth, signed by the CA;
* `expired_client_cert`/`expired_client_key`: CN=worker-1, valid only in
  January 2020;
* `untrusted_ca_cert`/`untrusted_ca_key` (CN "Untrusted Test CA") and
  `untrusted_client_cert`/`untrusted_client_key`: CN=worker-1 signed by that
  other CA.

Keys are EC P-256 (PKCS#8 PEM).  Leaf certificates are issued with
`openssl ca`, whose -startdate/-enddate give a validity in the past with
OpenSSL 3.0 (its `x509 -req` has no -not_before), so no faketime is needed.
Only the standard library and the openssl binary are used.
"""

from __future__ import annotations

import calendar
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLIENT_CN = "worker-1"
SERVER_CN = "localhost"
EXPIRED_START = "20200101000000Z"
EXPIRED_END = "20200201000000Z"

_CONFIG = """\
[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = placeholder

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ ca ]
default_ca = ca_default

[ ca_default ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
default_days = 30

[ policy_any ]
commonName = supplied

[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TLSCerts:
    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    server2_cert: Path
    server2_key: Path
    expired_server_cert: Path
    expired_server_key: Path
    client_cert: Path
    client_key: Path
    expired_client_cert: Path
    expired_client_key: Path
    untrusted_ca_cert: Path
    untrusted_ca_key: Path
    untrusted_client_cert: Path
    untrusted_client_key: Path

    @property
    def client_cn(self) -> str:
        return CLIENT_CN


def openssl_bin() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise RuntimeError("the openssl command line tool is not installed")
    return path


def _run(args, cwd: Path | None = None, input_text: str | None = None) -> str:
    res = subprocess.run([openssl_bin(), *map(str, args)], capture_output=True, text=True, timeout=60,
                         cwd=str(cwd) if cwd else None, input=input_text)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.stdout


class _CA:
    """One certificate authority: its key, self-signed cert and `openssl ca` state."""

    def __init__(self, directory: Path, name: str, cn: str):
        self.state = directory / f".{name}-state"
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "newcerts").mkdir(exist_ok=True)
        (self.state / "index.txt").write_text("")
        # A random first serial: certificates of two runs never share one.
        (self.state / "serial").write_text(secrets.token_hex(8).upper().lstrip("0").rjust(16, "1") + "\n")
        self.config = self.state / "openssl.cnf"
        self.config.write_text(_CONFIG.format(dir=self.state))
        self.key = directory / f"{name}.key"
        self.cert = directory / f"{name}.crt"
        _new_key(self.key)
        _run(["req", "-config", self.config, "-new", "-x509", "-key", self.key, "-out", self.cert,
              "-days", "60", "-subj", f"/CN={cn}", "-extensions", "v3_ca", "-sha256"])

    def issue(self, directory: Path, name: str, cn: str, extensions: str,
              start: str | None = None, end: str | None = None, days: int = 30) -> tuple[Path, Path]:
        key = directory / f"{name}.key"
        cert = directory / f"{name}.crt"
        csr = self.state / f"{name}.csr"
        _new_key(key)
        _run(["req", "-config", self.config, "-new", "-key", key, "-out", csr, "-subj", f"/CN={cn}"])
        # Valid from a minute ago unless told otherwise (clock granularity).
        start = start or time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - 60))
        validity = ["-startdate", start] + (["-enddate", end] if end else ["-days", str(days)])
        _run(["ca", "-batch", "-config", self.config, "-in", csr, "-out", cert, "-cert", self.cert,
              "-keyfile", self.key, "-extensions", extensions, "-notext", *validity])
        return cert, key


def _new_key(path: Path) -> None:
    _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
    os.chmod(path, 0o600)


def make_certs(directory) -> TLSCerts:
    """Makes the whole test PKI in `directory` (created if missing)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca = _CA(d, "ca", "Weft Test CA")
    other = _CA(d, "untrusted-ca", "Untrusted Test CA")
    server = ca.issue(d, "server", SERVER_CN, "server_ext", days=30)
    server2 = ca.issue(d, "server2", SERVER_CN, "server_ext", days=45)
    expired_server = ca.issue(d, "expired-server", SERVER_CN, "server_ext", start=EXPIRED_START, end=EXPIRED_END)
    client = ca.issue(d, "client", CLIENT_CN, "client_ext")
    expired_client = ca.issue(d, "expired-client", CLIENT_CN, "client_ext", start=EXPIRED_START, end=EXPIRED_END)
    untrusted_client = other.issue(d, "untrusted-client", CLIENT_CN, "client_ext")
    return TLSCerts(
        directory=d, ca_cert=ca.cert, ca_key=ca.key,
        server_cert=server[0], server_key=server[1],
        server2_cert=server2[0], server2_key=server2[1],
        expired_server_cert=expired_server[0], expired_server_key=expired_server[1],
        client_cert=client[0], client_key=client[1],
        expired_client_cert=expired_client[0], expired_client_key=expired_client[1],
        untrusted_ca_cert=other.cert, untrusted_ca_key=other.key,
        untrusted_client_cert=untrusted_client[0], untrusted_client_key=untrusted_client[1],
    )


# ---------------------------------------------------------------------------
# Reading certificates
# ---------------------------------------------------------------------------


def _x509_field(pem: str, option: str) -> str:
    return _run(["x509", "-noout", option], input_text=pem).strip()


def serial_of(cert) -> str:
    """The serial number (upper-case hex) of a PEM certificate: a path or the PEM text."""
    pem = Path(cert).read_text() if isinstance(cert, Path) else cert
    out = _x509_field(pem, "-serial")  # serial=0123ABCD
    return out.split("=", 1)[1].strip().upper()


def not_after_of(cert) -> int:
    """The unix time a PEM certificate (path or PEM text) expires."""
    pem = Path(cert).read_text() if isinstance(cert, Path) else cert
    out = _x509_field(pem, "-enddate")  # notAfter=Jan  1 00:00:00 2030 GMT
    return calendar.timegm(time.strptime(out.split("=", 1)[1].strip(), "%b %d %H:%M:%S %Y %Z"))


def subject_cn_of(cert) -> str:
    pem = Path(cert).read_text() if isinstance(cert, Path) else cert
    out = _run(["x509", "-noout", "-subject", "-nameopt", "multiline"], input_text=pem)
    for line in out.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "commonName":
            return value.strip()
    raise ValueError(f"no CN in {out!r}")


def first_pem_certificate(text: str) -> str | None:
    """The first PEM certificate block in `text` (e.g. `openssl s_client -showcerts` output)."""
    begin = text.find("-----BEGIN CERTIFICATE-----")
    if begin < 0:
        return None
    end = text.find("-----END CERTIFICATE-----", begin)
    if end < 0:
        return None
    return text[begin:end + len("-----END CERTIFICATE-----")] + "\n"


def s_client(host: str, port: int, *args, input_bytes: bytes = b"", timeout: float = 15) -> subprocess.CompletedProcess:
    """`openssl s_client -connect host:port ARGS`, stdin `input_bytes` then EOF
    (s_client then closes the connection); stdout and stderr as text."""
    return subprocess.run([openssl_bin(), "s_client", "-connect", f"{host}:{port}", *map(str, args)],
                          input=input_bytes, capture_output=True, timeout=timeout)


def served_certificate(host: str, port: int, ca: Path | None = None, servername: str = "localhost",
                       extra=()) -> str:
    """The leaf certificate (PEM) a TLS server presents on a new connection."""
    args = ["-servername", servername, "-showcerts", *extra]
    if ca is not None:
        args += ["-CAfile", ca]
    res = s_client(host, port, *args)
    out = res.stdout.decode(errors="replace")
    pem = first_pem_certificate(out)
    if pem is None:
        raise AssertionError(f"no certificate from {host}:{port} (rc={res.returncode}):\n{out}\n"
                             f"{res.stderr.decode(errors='replace')}")
    return pem
