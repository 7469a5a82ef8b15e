"""C2PA content credentials: sign a manifest into a finished MP4, WAV or MP3, and read one back.

The manifest says what talkstack knows for certain about the file: the software that made it
(`claim_generator_info`: talkstack and its version), that it was created by a trained model
(`c2pa.created` with the IPTC digital source type `trainedAlgorithmicMedia`, the term for
AI-generated media), which models made it and the job id (`org.talkstack.generation`), and that it
may not be used to train models (`c2pa.training-mining`). It is signed with the operator's key and
certificate chain; a reader checks the signature and that the file's bytes are those signed.

What it does not prove: who was shown or heard (a likeness or a voice), that the content is true,
or anything once the manifest is stripped (re-encoding or re-uploading drops it; the watermark is
what survives that). With the throwaway test certificate (`throwaway_signer`) a reader sees a valid
signature from an untrusted signer.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
"""The IPTC digital source type for media created by a trained model."""
GENERATION_LABEL = "org.talkstack.generation"
FORMATS = {".mp4": "video/mp4", ".mov": "video/quicktime", ".wav": "audio/wav", ".mp3": "audio/mpeg"}
"""What is signed, by file suffix (c2pa-rs embeds in all four; its Builder refuses WebM, "type is
unsupported", so a composition's WebM with alpha is published unsigned)."""


class SignerDocument(BaseModel):
    """What the Secrets Manager secret (TALKSTACK_C2PA_SECRET) holds, as JSON."""

    certificate_chain: str = Field(min_length=1)
    """PEM certificates, the signer's first, then its issuers (the root may be left out)."""
    private_key: str = Field(min_length=1)
    """The signer's private key, PEM (PKCS#8)."""
    algorithm: str = "es256"
    """es256, es384, es512, ps256, ps384, ps512 or ed25519: must match the key."""


@dataclass(frozen=True)
class Generation:
    """What the manifest says about one output."""

    job_id: str
    models: list[str]
    title: str


def talkstack_version() -> str:
    try:
        return version("talkstack")
    except PackageNotFoundError:
        return "0+unknown"


def manifest(generation: Generation) -> dict[str, Any]:
    agent = {"name": "talkstack", "version": talkstack_version()}
    return {
        "claim_generator_info": [agent],
        "title": generation.title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_GENERATED,
                            "softwareAgent": agent,
                            "parameters": {"models": generation.models},
                        }
                    ]
                },
            },
            {
                "label": GENERATION_LABEL,
                "data": {"job_id": generation.job_id, "models": generation.models},
            },
            {
                "label": "c2pa.training-mining",
                "data": {
                    "entries": {
                        name: {"use": "notAllowed"}
                        for name in (
                            "c2pa.ai_generative_training",
                            "c2pa.ai_training",
                            "c2pa.data_mining",
                            "c2pa.ai_inference",
                        )
                    }
                },
            },
        ],
    }


def sign_file(source: Path, dest: Path, generation: Generation, signer: SignerDocument) -> Path:
    """Write `source` with the generation's signed manifest embedded to `dest`."""
    import c2pa  # a native library of ~50 MB: loaded only where something is signed or read

    fmt = FORMATS[source.suffix.lower()]
    info = c2pa.C2paSignerInfo(
        signer.algorithm.encode(), signer.certificate_chain.encode(), signer.private_key.encode(), None
    )
    with (
        c2pa.Signer.from_info(info) as native_signer,
        c2pa.Builder(manifest(generation)) as builder,
        source.open("rb") as src,
        dest.open("w+b") as out,
    ):
        builder.sign(native_signer, fmt, src, out)
    return dest


@dataclass
class Credentials:
    """What a reader found in a file's C2PA manifest."""

    found: bool
    validation_state: str | None = None
    """c2pa's verdict: Invalid, Valid (signature and hashes check out) or Trusted (and the signer
    chains to a trust list; talkstack configures none)."""
    failures: list[str] = field(default_factory=list)
    """c2pa's failure codes (e.g. assertion.dataHash.mismatch: the file was changed after signing)."""
    signer: str | None = None
    issuer: str | None = None
    generator: str | None = None
    ai_generated: bool = False
    models: list[str] = field(default_factory=list)
    job_id: str | None = None
    error: str | None = None


def read_credentials(path: Path) -> Credentials:
    """Read and validate the C2PA manifest of a file (found=False when it has none)."""
    import c2pa

    fmt = FORMATS.get(path.suffix.lower())
    try:
        with path.open("rb") as stream:
            reader = c2pa.Reader.try_create(fmt, stream) if fmt else c2pa.Reader.try_create(stream)
            if reader is None:
                return Credentials(found=False)
            with reader:
                active = reader.get_active_manifest() or {}
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
    except (c2pa.C2paError, KeyError) as exc:  # c2pa documents KeyError for a missing active manifest
        return Credentials(found=False, error=str(exc))
    failures = [
        item.get("code", "?")
        for item in (results.get("activeManifest") or {}).get("failure", [])
        if isinstance(item, dict)
    ]
    found = Credentials(found=True, validation_state=state, failures=failures)
    info = active.get("signature_info") or {}
    found.signer, found.issuer = info.get("common_name"), info.get("issuer")
    generators = active.get("claim_generator_info") or []
    if generators:
        found.generator = " ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip()
    for assertion in active.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data") or {}
        if label.startswith("c2pa.actions"):
            found.ai_generated |= any(
                action.get("digitalSourceType") == AI_GENERATED for action in data.get("actions", [])
            )
        elif label == GENERATION_LABEL:
            found.models, found.job_id = list(data.get("models", [])), data.get("job_id")
    return found


@lru_cache(maxsize=1)
def throwaway_signer() -> SignerDocument:
    """A throwaway signer: a P-256 key certified by a self-signed CA, both made now, in memory.

    Used locally (the local stack stores one in its Secrets Manager) and wherever no operator
    signer is configured. Readers report its signature valid and its signer untrusted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "talkstack test signer (untrusted)"),
            ]
        )

    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=3650))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("talkstack test CA"))
        .issuer_name(name("talkstack test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # C2PA wants an end-entity certificate for signing: digitalSignature, an allowed extended key
    # usage (emailProtection), not a CA, issued by another certificate.
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("talkstack test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SignerDocument(
        certificate_chain=(leaf.public_bytes(pem) + ca.public_bytes(pem)).decode(),
        private_key=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def signer_from_secret(text: str) -> SignerDocument | None:
    """The signer a secret's value holds, or None when it holds none yet (not JSON, or a
    placeholder without the fields: CDK creates the secret, the operator fills it)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.get("certificate_chain") or not data.get("private_key"):
        return None
    return SignerDocument.model_validate(data)
