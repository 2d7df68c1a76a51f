"""Certificates for the TLS tests, made once per test session with the ``openssl``
command (as a user following the README would make them).

``make(tmp_dir)`` returns a ``Certs`` whose attributes are ``Pem`` pairs (bytes and
paths):

* ``root``: RSA root CA, self-signed;  ``inter``: EC P-256 intermediate CA signed by
  root;  ``leaf``: RSA leaf for ``localhost`` / ``127.0.0.1`` (SAN) signed by the
  intermediate, its ``cert`` holding the chain leaf + intermediate;
* ``ec_cn``: EC P-256 key in SEC1 PEM (``BEGIN EC PRIVATE KEY``), certificate
  ``CN=localhost`` without SAN, signed by root (the original's typical cert);
* ``wrong_name``: a leaf for ``not-localhost.test`` only; ``expired`` and
  ``not_yet_valid``: leaves for localhost outside their dates (``openssl ca``);
* ``unknown``: a self-signed CA nobody trusts and a localhost leaf it signed;
* ``client``: a client certificate signed by root (mutual TLS).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess

_cache: dict[str, Certs] = {}

CA_CONF = """\
[ ca ]
default_ca = dated
[ dated ]
database = {d}/index.txt
new_certs_dir = {d}/newcerts
serial = {d}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = copy
[ anything ]
commonName = supplied
"""


@dataclasses.dataclass
class Pem:
    cert_path: pathlib.Path
    key_path: pathlib.Path

    @property
    def cert(self) -> bytes:
        return self.cert_path.read_bytes()

    @property
    def key(self) -> bytes:
        return self.key_path.read_bytes()


@dataclasses.dataclass
class Certs:
    dir: pathlib.Path
    root: Pem
    inter: Pem
    leaf: Pem
    ec_cn: Pem
    wrong_name: Pem
    expired: Pem
    not_yet_valid: Pem
    unknown_ca: Pem
    unknown: Pem
    client: Pem


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class _Maker:
    def __init__(self, d: pathlib.Path):
        self.d = d

    def key(self, name: str, kind: str) -> pathlib.Path:
        path = self.d / f"{name}.key"
        if kind == "rsa":
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", str(path), cwd=self.d)
        elif kind == "ec-sec1":  # "-----BEGIN EC PRIVATE KEY-----"
            _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path),
                     cwd=self.d)
        else:  # EC in PKCS#8
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", str(path), cwd=self.d)
        return path

    def csr(self, name: str, key: pathlib.Path, cn: str, ext: str | None) -> pathlib.Path:
        path = self.d / f"{name}.csr"
        args = ["req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(path)]
        if ext:
            args += ["-addext", ext]
        _openssl(*args, cwd=self.d)
        return path

    def ext_file(self, name: str, lines: list[str]) -> pathlib.Path:
        path = self.d / f"{name}.ext"
        path.write_text("\n".join(lines) + "\n")
        return path

    def root(self, name: str, cn: str, kind: str) -> Pem:
        key = self.key(name, kind)
        cert = self.d / f"{name}.pem"
        _openssl("req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-days", "30",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(cert), cwd=self.d)
        return Pem(cert, key)

    def signed(self, name: str, cn: str, kind: str, issuer: Pem, *, san: str | None = None,
               ca: bool = False, client: bool = False) -> Pem:
        key = self.key(name, kind)
        csr = self.csr(name, key, cn, None)
        lines = ["basicConstraints=critical,CA:TRUE" if ca else "basicConstraints=CA:FALSE"]
        if ca:
            lines.append("keyUsage=critical,keyCertSign,cRLSign")
        else:
            lines.append("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth"))
        if san:
            lines.append(f"subjectAltName={san}")
        cert = self.d / f"{name}.pem"
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(issuer.cert_path), "-CAkey",
                 str(issuer.key_path), "-CAcreateserial", "-days", "30", "-sha256",
                 "-extfile", str(self.ext_file(name, lines)), "-out", str(cert), cwd=self.d)
        return Pem(cert, key)

    def dated(self, name: str, issuer: Pem, start: str, end: str) -> Pem:
        """A localhost leaf with validity dates of our choosing (YYYYMMDDHHMMSSZ)."""
        (self.d / "newcerts").mkdir(exist_ok=True)
        (self.d / "index.txt").touch()
        serial = self.d / "serial"
        if not serial.exists():
            serial.write_text("1000\n")
        conf = self.d / "ca.cnf"
        conf.write_text(CA_CONF.format(d=self.d))
        key = self.key(name, "ec")
        csr = self.csr(name, key, "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")
        cert = self.d / f"{name}.pem"
        _openssl("ca", "-batch", "-notext", "-config", str(conf), "-cert", str(issuer.cert_path),
                 "-keyfile", str(issuer.key_path), "-in", str(csr), "-startdate", start,
                 "-enddate", end, "-out", str(cert), cwd=self.d)
        return Pem(cert, key)


def make(d: pathlib.Path) -> Certs:
    """The certificates, made once per session (under ``d`` the first time)."""
    if "certs" in _cache:
        return _cache["certs"]
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed for the TLS tests")
    d.mkdir(parents=True, exist_ok=True)
    m = _Maker(d)
    root = m.root("root", "Test Root CA", "rsa")
    inter = m.signed("inter", "Test Intermediate CA", "ec", root, ca=True)
    leaf = m.signed("leaf", "localhost", "rsa", inter, san="DNS:localhost,IP:127.0.0.1")
    chain = d / "leaf-chain.pem"
    chain.write_bytes(leaf.cert + inter.cert)
    leaf = Pem(chain, leaf.key_path)
    ec_cn = m.signed("ec_cn", "localhost", "ec-sec1", root)
    wrong = m.signed("wrong", "not-localhost.test", "ec", root, san="DNS:not-localhost.test")
    expired = m.dated("expired", root, "20200101000000Z", "20200201000000Z")
    future = m.dated("future", root, "20991201000000Z", "20991231000000Z")
    unknown_ca = m.root("unknown_ca", "Unknown CA", "ec")
    unknown = m.signed("unknown", "localhost", "ec", unknown_ca, san="DNS:localhost,IP:127.0.0.1")
    client = m.signed("client", "test client", "ec", root, client=True)
    certs = Certs(d, root, inter, leaf, ec_cn, wrong, expired, future, unknown_ca, unknown, client)
    _cache["certs"] = certs
    return certs
