"""`raychat up --tls-cert --tls-key`: HTTPS and WSS on the one port, with a self-signed certificate."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from raychat.config import ConfigError, check_tls_files, load_settings
from tests.test_cli import fresh_env, launched, run_cli  # noqa: F401  (launched is a fixture)


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP SAN, as clients check) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# ---- configuration ------------------------------------------------------------------------------

def test_a_certificate_without_its_key_names_both_variables():
    with pytest.raises(ConfigError, match="RAYCHAT_TLS_CERT and RAYCHAT_TLS_KEY go together"):
        load_settings(tls_cert="/etc/raychat/cert.pem")


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(tmp_path):
    cert, _ = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    with pytest.raises(ConfigError, match="RAYCHAT_TLS_CERT / RAYCHAT_TLS_KEY: cannot load"):
        check_tls_files(load_settings(tls_cert=str(cert), tls_key=str(other_key)))


def test_up_with_a_missing_certificate_file_exits_2_naming_it(tmp_path):
    out = run_cli("up", "--data-dir", str(tmp_path / "data"), "--tls-cert", str(tmp_path / "nope.pem"),
                  "--tls-key", str(tmp_path / "nope.key"), env=fresh_env())
    assert out.returncode == 2, out.stderr
    assert "RAYCHAT_TLS_CERT: no such file" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists(), "nothing may start before the files are checked"


# ---- end to end ---------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_up_serves_https_and_wss_with_the_given_certificate(launched, tmp_path):  # noqa: F811
    cert, key = self_signed(tmp_path)
    up = launched(tmp_path / "data", args=["--tls-cert", str(cert), "--tls-key", str(key)], ca=cert)
    assert up.url.startswith("https://")
    up.wait_healthy()
    trusting = ssl.create_default_context(cafile=str(cert))

    # Plain HTTP on the port is not answered at all: the TLS handshake fails first.
    with pytest.raises(httpx.HTTPError):
        httpx.get(up.url.replace("https://", "http://") + "/healthz", timeout=5)
    # A client that does not trust the certificate refuses the connection.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(up.url + "/healthz", timeout=5)

    with httpx.Client(base_url=up.url, verify=trusting, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        # Serve's proxy is the front door here: its server answers as a replica's does (one sane
        # X-Request-ID, never the client's unsafe one).
        assert client.get("/healthz", headers={"X-Request-ID": "trace-1"}).headers.get_list("x-request-id") == \
            ["trace-1"]
        [rid] = client.get("/healthz", headers={"X-Request-ID": "a b"}).headers.get_list("x-request-id")
        assert rid != "a b" and len(rid) == 36
        creds = {"username": "tls_alice", "password": "correct horse battery"}
        assert client.post("/v1/auth/register", json=creds).status_code == 201
        login = client.post("/v1/auth/login", json=creds)
        assert login.status_code == 200, login.text
        token, user_id = login.json()["access_token"], login.json()["user_id"]

    async def hello() -> dict:
        url = up.url.replace("https://", "wss://") + "/v1/ws"
        async with websockets.connect(url, ssl=trusting, compression="deflate") as ws:
            # Offered, and declined: ws_compression is off, in the proxy's server too.
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws.send(json.dumps({"type": "hello", "token": token}))
            return json.loads(await asyncio.wait_for(ws.recv(), 15))

    welcome = asyncio.run(hello())
    assert welcome["type"] == "welcome" and welcome["user_id"] == user_id, welcome
    up.wait_for_output(f"raychat is up on {up.url} ")
    up.terminate_and_check()
