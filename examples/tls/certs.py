"""Certificates for the TLS examples, made on first run with ``trustme``.

``trustme`` is a test/demo helper (``pip install trustme``), not a geventipc dependency:
in production your certificates come from your own CA or a tool such as ``step`` or
``openssl``. Nothing here is stored in the repository; the files are written once into
an owner-only temp directory (``$GEVENTIPC_TLS_DIR`` to choose another) and reused.

Two CAs, as mutual TLS usually has them: one issues the server's certificate (clients
trust it), the other issues client certificates (the server trusts it). The CAs' private
keys are never written: once the certificates exist they are not needed.
"""
import os
import tempfile

FILES = ("server-ca.pem", "server.pem", "server.key", "client-ca.pem", "client.pem",
         "client.key")


def cert_dir() -> str:
    """The directory holding the example certificates, created (mode 0700) on first use."""
    path = os.environ.get("GEVENTIPC_TLS_DIR") or os.path.join(
        tempfile.gettempdir(), f"geventipc-tls-example-{os.getuid()}")
    if all(os.path.exists(os.path.join(path, name)) for name in FILES):
        return path
    try:
        import trustme  # noqa: PLC0415 - only needed on first run
    except ImportError:
        raise SystemExit("the TLS examples make their certificates with trustme: "
                         "pip install trustme") from None
    os.makedirs(path, mode=0o700, exist_ok=True)
    # write into a fresh directory, then move each file in: a client started at the same
    # moment never reads half a file
    staging = tempfile.mkdtemp(dir=path)
    server_ca = trustme.CA(organization_name="geventipc example server CA")
    client_ca = trustme.CA(organization_name="geventipc example client CA")
    server = server_ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = client_ca.issue_cert("client-1.example", common_name="client-1")
    server_ca.cert_pem.write_to_path(os.path.join(staging, "server-ca.pem"))
    client_ca.cert_pem.write_to_path(os.path.join(staging, "client-ca.pem"))
    for name, leaf in (("server", server), ("client", client)):
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(os.path.join(staging, name + ".pem"), append=True)
        key = os.path.join(staging, name + ".key")
        leaf.private_key_pem.write_to_path(key)
        os.chmod(key, 0o600)
    for name in FILES:
        os.replace(os.path.join(staging, name), os.path.join(path, name))
    os.rmdir(staging)
    return path


def cert(name: str) -> str:
    """The path of one example file (``server.pem``, ``client.key``...)."""
    return os.path.join(cert_dir(), name)
