"""Certificate verification for sources fetched over TLS (https, rtsps, rtmps).

FFmpeg does not verify a server's certificate unless told to (``tls_verify``); streamer does by default, against
the CA bundle given (``SourceOptions.ca_file``) or else the system's, which is looked up here because the FFmpeg
inside PyAV's wheel (GnuTLS) may have been built for another system's paths. ``tls_insecure`` turns verification
off, as ``mqtts://`` ``tls_insecure`` does.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from .options import SourceOptions
from .spec import SourceSpec

TLS_SCHEMES = frozenset({"https", "rtsps", "rtmps"})
_WELL_KNOWN_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, Alpine
    "/etc/ssl/ca-bundle.pem",  # openSUSE
)


def uses_tls(spec: SourceSpec) -> bool:
    return spec.scheme in TLS_SCHEMES


def system_ca_bundle() -> str | None:
    """The system's CA bundle: ``SSL_CERT_FILE``, Python's OpenSSL default, or a well-known path."""
    candidates = [os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile, *_WELL_KNOWN_BUNDLES]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def tls_options(spec: SourceSpec, options: SourceOptions) -> dict[str, str]:
    """FFmpeg protocol options for a TLS source: verify the certificate and the host name, unless insecure."""
    if not uses_tls(spec):
        return {}
    if options.tls_insecure:
        return {"tls_verify": "0"}
    out = {"tls_verify": "1"}
    bundle = options.ca_file or system_ca_bundle()
    if bundle is not None:
        out["ca_file"] = bundle
    return out
