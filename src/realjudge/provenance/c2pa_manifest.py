"""C2PA manifests, read and validated by c2pa-python (the Content Authenticity Initiative's c2pa-rs).

The validation state decides the strength: `Trusted` (the signer chains to an anchor in
REALJUDGE_C2PA_TRUST_ANCHORS, a PEM file) is `signed`; `Valid` (signature and hashes check out, the
signer is unknown to us) is `signed_untrusted`; `Invalid` (tampered, or a broken signature) is a
hint. No network: remote manifests and OCSP are never fetched.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache

from .findings import Finding, failure
from .xmp import source_type

MAX_ASSET_BYTES = 64 << 20
"""c2pa hashes the whole file to check the manifest's binding; beyond this it is not attempted."""
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "AVIF": "image/avif",
        "HEIF": "image/heif", "GIF": "image/gif"}
TRUST_ENV = "REALJUDGE_C2PA_TRUST_ANCHORS"
_STRENGTH = {"Trusted": "signed", "Valid": "signed_untrusted"}
_SAYS_ORDER = ("ai", "ai_edited", "camera")


def read(data: bytes, meta) -> list[Finding]:
    if not meta.c2pa_marker:
        return []
    if meta.format not in MIME:
        return []
    if len(data) > MAX_ASSET_BYTES:
        return [failure("c2pa", f"file over {MAX_ASSET_BYTES >> 20} MiB; its manifest is not validated")]
    try:
        import c2pa
    except ImportError:
        return [failure("c2pa", "the file may hold a C2PA manifest, but c2pa-python is not installed "
                                "(pip install 'realjudge[provenance]')")]
    try:
        reader = c2pa.Reader.try_create(MIME[meta.format], io.BytesIO(data), None, _context())
    except c2pa.C2paError as err:
        return [failure("c2pa", f"unreadable C2PA manifest ({err})")]
    if reader is None:
        return []
    with reader:
        state = reader.get_validation_state()
        manifest = reader.get_active_manifest() or {}
        results = reader.get_validation_results() or {}
    return [_finding(state, manifest, results)]


@lru_cache(maxsize=1)
def _context():
    import c2pa

    settings = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    anchors = os.environ.get(TRUST_ENV)
    if anchors:
        with open(anchors, encoding="utf-8") as f:
            settings["trust"] = {"trust_anchors": f.read()}
    return c2pa.Context.from_dict(settings)


def _finding(state: str | None, manifest: dict, results: dict) -> Finding:
    actions, types = [], []
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions", []):
                actions.append(action.get("action"))
                if action.get("digitalSourceType"):
                    types.append(source_type(action["digitalSourceType"]))
    says = next((s for s in _SAYS_ORDER if any(t[1] == s for t in types)), "unknown")
    generator = [g.get("name") for g in manifest.get("claim_generator_info", []) if isinstance(g, dict)]
    failures = [r.get("code") for r in (results.get("activeManifest") or {}).get("failure", [])]
    signature = manifest.get("signature_info") or {}
    return Finding("c2pa", says, _STRENGTH.get(state or "", "hint"), {
        "validation_state": state, "claim_generator": ", ".join(filter(None, generator)) or manifest.get("claim_generator"),
        "actions": actions, "digital_source_types": sorted({t[0] for t in types}),
        "signer": signature.get("common_name"), "issuer": signature.get("issuer"), "failures": failures,
        "title": manifest.get("title")})
