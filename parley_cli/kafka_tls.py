"""TLS material for the local broker's SSL listeners, made with the JDK's ``keytool`` (no Python crypto dependency).

A throwaway certificate authority signs one broker certificate valid for ``localhost`` and ``127.0.0.1``. The
broker gets a PKCS12 keystore holding its key and chain; clients get the CA certificate as PEM
(``PARLEY_KAFKA__SSL_CAFILE``). The CA's private key is deleted once it has signed, so nothing else can be
issued under it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CA_ALIAS = "parley-local-ca"
BROKER_ALIAS = "broker"
KEYSTORE_FILE = "broker.p12"
CA_CERTIFICATE_FILE = "ca.pem"
PASSWORD_FILE = "keystore.password"
# Under the 825-day ceiling some TLS clients apply to server certificates.
VALIDITY_DAYS = 800
# EC keys generate in milliseconds, where RSA keys cost a noticeable part of a broker start.
KEY_OPTIONS = ("-keyalg", "EC", "-groupname", "secp256r1")


class KeytoolError(RuntimeError):
    """``keytool`` refused a step; the message has its output."""


@dataclass(frozen=True)
class BrokerTlsMaterial:
    """Where the broker's keystore and the clients' CA certificate are."""

    keystore: Path
    keystore_password: str
    ca_certificate: Path


def ensure_broker_tls(directory: Path, *, keytool: str) -> BrokerTlsMaterial:
    """Reuse the material in ``directory`` or create it there (atomically: a half-made set is never left).

    Kept across restarts so a client's CA file stays valid for the life of the data dir.
    """
    existing = _load(directory)
    if existing is not None:
        return existing
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        _generate(staging, keytool=keytool)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    material = _load(directory)
    if material is None:
        raise KeytoolError(f"TLS material in {directory} is incomplete after generating it")
    return material


def write_certificate_authority(directory: Path, *, keytool: str, name: str) -> Path:
    """A fresh self-signed CA certificate (PEM) in ``directory``; its key is discarded.

    Useful as the *wrong* CA: a client trusting only this one must refuse the broker.
    """
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    keystore = directory / f"{name}.p12"
    certificate = directory / f"{name}.pem"
    _make_ca(keystore, certificate, password, keytool=keytool, common_name=name)
    keystore.unlink()
    return certificate


def _load(directory: Path) -> BrokerTlsMaterial | None:
    keystore, ca, password = (directory / f for f in (KEYSTORE_FILE, CA_CERTIFICATE_FILE, PASSWORD_FILE))
    if not (keystore.exists() and ca.exists() and password.exists()):
        return None
    return BrokerTlsMaterial(keystore=keystore, keystore_password=password.read_text().strip(), ca_certificate=ca)


def _generate(directory: Path, *, keytool: str) -> None:
    password = secrets.token_urlsafe(18)
    ca_keystore = directory / "ca.p12"
    ca_certificate = directory / CA_CERTIFICATE_FILE
    keystore = directory / KEYSTORE_FILE
    _make_ca(ca_keystore, ca_certificate, password, keytool=keytool, common_name="Parley local Kafka CA")
    store = ("-storetype", "PKCS12", "-storepass", password)
    _keytool(
        keytool,
        "-genkeypair",
        "-alias",
        BROKER_ALIAS,
        *KEY_OPTIONS,
        "-dname",
        "CN=localhost,O=Parley",
        "-validity",
        str(VALIDITY_DAYS),
        "-keystore",
        str(keystore),
        *store,
    )
    request = directory / "broker.csr"
    _keytool(keytool, "-certreq", "-alias", BROKER_ALIAS, "-keystore", str(keystore), *store, "-file", str(request))
    signed = directory / "broker.pem"
    _keytool(
        keytool,
        "-gencert",
        "-alias",
        CA_ALIAS,
        "-keystore",
        str(ca_keystore),
        *store,
        "-infile",
        str(request),
        "-outfile",
        str(signed),
        "-rfc",
        "-validity",
        str(VALIDITY_DAYS),
        # Clients verify the host they dialled; the broker advertises 127.0.0.1.
        "-ext",
        "SAN=dns:localhost,ip:127.0.0.1",
        "-ext",
        "EKU=serverAuth",
        "-ext",
        "KU=digitalSignature",
    )
    # keytool accepts the whole chain as the certificate reply and checks it ends at a CA it is given.
    chain = directory / "broker-chain.pem"
    chain.write_text(signed.read_text() + ca_certificate.read_text())
    reply = ("-alias", BROKER_ALIAS, "-file", str(chain), "-keystore", str(keystore))
    _keytool(keytool, "-importcert", "-noprompt", *reply, *store)
    for leftover in (ca_keystore, request, signed, chain):
        leftover.unlink()
    password_file = directory / PASSWORD_FILE
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    keystore.chmod(0o600)


def _make_ca(keystore: Path, certificate: Path, password: str, *, keytool: str, common_name: str) -> None:
    store = ("-storetype", "PKCS12", "-storepass", password)
    _keytool(
        keytool,
        "-genkeypair",
        "-alias",
        CA_ALIAS,
        *KEY_OPTIONS,
        "-dname",
        f"CN={common_name},O=Parley",
        "-validity",
        str(VALIDITY_DAYS),
        "-ext",
        "BC:critical=ca:true",
        "-ext",
        "KU:critical=keyCertSign,cRLSign",
        "-keystore",
        str(keystore),
        *store,
    )
    export = ("-alias", CA_ALIAS, "-keystore", str(keystore), "-file", str(certificate))
    _keytool(keytool, "-exportcert", "-rfc", *export, *store)


def _keytool(keytool: str, *args: str) -> None:
    # Each call is a short-lived JVM: the quick-start flags roughly halve its cost.
    jvm = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Xshare:auto")
    result = subprocess.run([keytool, *jvm, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KeytoolError(f"keytool {args[0]} failed (exit {result.returncode}): {result.stdout}{result.stderr}")
