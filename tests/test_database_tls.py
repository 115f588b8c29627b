"""TLS to PostgreSQL, verify-full (flow_kit.tls): against a throwaway cluster serving a certificate
for `localhost` from a throwaway CA, every way FLOW connects (the services' engines with and without a
Secrets Manager secret, flow-migrate, the reconciliation) goes ahead only with the right CA and host
name, really over TLS, and never falls back to plain text; and the chart hands the services, the
migration Job and the reconciliation the mode and the CA bundle."""

import asyncio
import datetime
import shutil
import ssl
import tempfile
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from flow_engine import reconcile
from flow_kit import migrations
from flow_kit.db import create_database
from flow_kit.secrets import Credentials
from flow_kit.settings import DatabaseSettings
from flow_kit.tls import database_ssl
from tests.test_chart import CHART, by_kind, chart_tools, env_of, helm_template, pod_specs, rendered  # noqa: F401  (chart_tools: helm)
from tools.devstack.postgres import PostgresCluster
from tools.devstack.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer: tuple | None, sans: list, ca: bool) -> tuple:
    """(certificate, key): self-signed when `issuer` is None, else signed by issuer's (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer[0].subject if issuer else _name(subject)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
                                        critical=False)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write(path: Path, certificate, key=None) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def tls_server():
    """A PostgreSQL with ssl=on and a certificate for DNS:localhost only (not 127.0.0.1) from its own
    CA; plus another CA that signed nothing of it."""
    folder = Path(tempfile.mkdtemp(prefix="flow-tls-"))
    folder.chmod(0o755)  # the postgres user must reach the cluster inside it
    ca = _certificate("FLOW test CA", None, [], ca=True)
    server = _certificate("localhost", ca, [x509.DNSName("localhost")], ca=False)
    other = _certificate("Another CA", None, [], ca=True)
    files = {"ca": _write(folder / "ca.pem", ca[0]), "other": _write(folder / "other-ca.pem", other[0]),
             "cert": _write(folder / "server.pem", *server)}
    cluster = PostgresCluster(folder / "pg" / "data", free_port(), fast=True,
                              tls=(files["cert"], files["cert"].with_suffix(".key")))
    cluster.start()
    try:
        yield cluster, files
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _settings(port: int, host: str = "localhost", **tls) -> DatabaseSettings:
    return DatabaseSettings(database_url=f"postgresql+asyncpg://postgres@{host}:{port}/flow", database_pool_size=1, **tls)


async def _ssl_of_session(engine) -> tuple:
    try:
        async with engine.connect() as conn:
            return tuple((await conn.execute(text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).one())
    finally:
        await engine.dispose()


class _Secret:
    """Stands in for DatabaseCredentials (Secrets Manager): create_database's other connection path."""
    secret_id = "flow/database"

    async def current(self) -> Credentials:
        return Credentials(username="postgres", password="unused")

    async def after_auth_failure(self, used, failed_at):
        return None


@pytest.mark.parametrize("with_secret", [False, True], ids=["url", "secret"])
async def test_verify_full_connects_over_tls_with_the_right_ca_and_host(tls_server, with_secret):
    cluster, files = tls_server
    settings = _settings(cluster.port, database_sslmode="verify-full", database_sslrootcert=str(files["ca"]))
    if with_secret:
        settings = settings.model_copy(update={"database_secret_id": "flow/database"})
    engine = create_database(settings, "flow-test", credentials=_Secret() if with_secret else None)
    on, version = await _ssl_of_session(engine)
    assert on is True and version.startswith("TLS")  # the server's own word: this session is encrypted


@pytest.mark.parametrize("with_secret", [False, True], ids=["url", "secret"])
@pytest.mark.parametrize(("host", "ca", "why"), [
    ("localhost", "other", "certificate verify failed"),  # a CA that did not sign the server's certificate
    ("127.0.0.1", "ca", "IP address mismatch"),            # the right CA, but the certificate names localhost only
])
async def test_verify_full_refuses_a_wrong_ca_or_host_name(tls_server, with_secret, host, ca, why):
    cluster, files = tls_server
    settings = _settings(cluster.port, host, database_sslmode="verify-full", database_sslrootcert=str(files[ca]))
    if with_secret:
        settings = settings.model_copy(update={"database_secret_id": "flow/database"})
    engine = create_database(settings, "flow-test", credentials=_Secret() if with_secret else None)
    with pytest.raises(ssl.SSLCertVerificationError, match=why):
        await _ssl_of_session(engine)


async def test_verify_ca_checks_the_chain_but_not_the_host_name(tls_server):
    cluster, files = tls_server
    engine = create_database(_settings(cluster.port, "127.0.0.1", database_sslmode="verify-ca",
                                       database_sslrootcert=str(files["ca"])), "flow-test")
    assert (await _ssl_of_session(engine))[0] is True


async def test_verify_full_never_falls_back_to_plain_text():
    """A server that declines TLS (answers 'N' to the SSLRequest, as one with ssl=off does) is refused;
    with prefer the same client would go on in plain text, sending its startup message."""
    startups = []

    async def declining(reader, writer):
        await reader.readexactly(8)  # SSLRequest
        writer.write(b"N")
        await writer.drain()
        startups.append(await reader.read(8))  # the plain-text StartupMessage, if the client goes on
        writer.close()

    server = await asyncio.start_server(declining, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
            await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="flow",
                                  ssl=database_ssl("verify-full", None), timeout=5)
        assert startups in ([], [b""])
        with pytest.raises(Exception):
            await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="flow",
                                  ssl=database_ssl("prefer"), timeout=5)
        assert any(startups)  # prefer went on unencrypted: what verify-full is there to prevent
    finally:
        server.close()
        await server.wait_closed()


def test_flow_migrate_and_the_reconciliation_verify_the_server(tls_server, monkeypatch, capsys):
    cluster, files = tls_server
    url = f"postgresql+asyncpg://postgres@localhost:{cluster.port}/flow"
    monkeypatch.setenv("FLOW_DATABASE_SSLMODE", "verify-full")
    monkeypatch.setenv("FLOW_DATABASE_SSLROOTCERT", str(files["other"]))
    with pytest.raises(ssl.SSLCertVerificationError):
        migrations.main(["--database-url", url, "--sql-dir", str(ROOT / "sql")])
    monkeypatch.setenv("FLOW_DATABASE_SSLROOTCERT", str(files["ca"]))
    assert migrations.main(["--database-url", url, "--sql-dir", str(ROOT / "sql")]) == 0
    assert reconcile.main(["--database-url", url]) == 0
    with pytest.raises(ssl.SSLCertVerificationError):
        reconcile.main(["--database-url", url.replace("localhost", "127.0.0.1")])
    capsys.readouterr()


def test_settings_refuse_a_root_certificate_that_would_not_be_used():
    with pytest.raises(ValueError, match="only used with"):
        _settings(5432, database_sslmode="require", database_sslrootcert="/etc/ca.pem")
    with pytest.raises(ValueError, match="only used with"):
        database_ssl("prefer", "/etc/ca.pem")
    assert database_ssl(None) is None and database_ssl("disable") == "disable"
    context = database_ssl("verify-full", None)  # no bundle: the system's CAs
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


# --- the chart ---------------------------------------------------------------------------------------

def test_the_chart_verifies_the_database_in_every_pod_by_default():
    docs = rendered("default-values.yaml")
    specs = dict(pod_specs(docs))
    assert set(specs) == {"flow-ingest", "flow-engine", "flow-query", "flow-migrate", "flow-reconcile"}
    for name, spec in specs.items():
        [c] = spec["containers"]
        env = env_of(c)
        prefix = "FLOW_" if name in ("flow-migrate", "flow-reconcile") else f"FLOW_{name.split('-')[1].upper()}_"
        assert env[prefix + "DATABASE_SSLMODE"]["value"] == "verify-full", name
        assert env[prefix + "DATABASE_SSLROOTCERT"]["value"] == "/etc/flow/database-ca/global-bundle.pem", name
        [volume] = [v for v in spec["volumes"] if v["name"] == "database-ca"]
        assert volume["configMap"]["name"] == "rds-ca-bundle", name
        assert {"name": "database-ca", "mountPath": "/etc/flow/database-ca", "readOnly": True} in c["volumeMounts"], name
    # The bundle as a value: a ConfigMap of the chart's, made before the migration hook runs.
    keda = rendered("keda-values.yaml")
    [configmap] = by_kind(keda, "ConfigMap").values()
    assert configmap["metadata"]["name"] == "flow-database-ca" and "BEGIN CERTIFICATE" in configmap["data"]["ca.pem"]
    assert configmap["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(configmap["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    assert {v["configMap"]["name"] for _, s in pod_specs(keda) for v in s["volumes"] if "configMap" in v} == {"flow-database-ca"}


def test_the_chart_asks_for_the_ca_bundle_and_mounts_nothing_without_verification():
    minimal = CHART / "ci" / "minimal-values.yaml"
    missing = helm_template("-f", minimal, "--set", "database.tls.caConfigMap=")
    assert missing.returncode != 0 and "global-bundle.pem" in missing.stderr
    both = helm_template("-f", minimal, "--set", "database.tls.caBundle=-----BEGIN CERTIFICATE-----x-----END CERTIFICATE-----")
    assert both.returncode != 0 and "not both" in both.stderr
    plain = rendered("minimal-values.yaml", "--set", "database.tls.mode=require,database.tls.caConfigMap=")
    for name, spec in pod_specs(plain):
        assert [v["name"] for v in spec["volumes"]] == ["tmp"], name
        env = env_of(spec["containers"][0])
        assert not [n for n in env if n.endswith("SSLROOTCERT")] and "require" in [
            v.get("value") for n, v in env.items() if n.endswith("DATABASE_SSLMODE")], name
