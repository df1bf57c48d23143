"""Throwaway TLS material for the emulator (a private CA and a server certificate, via trustme)."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path


def make_server_context(hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[ssl.SSLContext, Path, Path]:
    """(server SSL context, CA certificate PEM path, temp dir holding it).

    Clients trust the CA with ``REQUESTS_CA_BUNDLE=<ca>`` / ``verify=<ca>`` (requests, PyGithub) or
    ``verify=ssl.create_default_context(cafile=<ca>)`` (httpx, the official pagerduty client).
    """
    import trustme

    ca = trustme.CA(organization_name="incident-metrics emulator")
    cert = ca.issue_cert(*hosts)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert.configure_cert(ctx)
    tmp = Path(tempfile.mkdtemp(prefix="incident-metrics-emulator-"))
    ca_path = tmp / "emulator-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ctx, ca_path, tmp
