"""The "provenance" group: the invisible watermark the engines embed, and the C2PA content
credentials finalize signs into every published video and audio file (docs/safety.md).

Workers (the engines) read the watermark settings; the finalize Lambda reads the credentials ones.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PUBLIC_WATERMARK_KEY = "talkstack-public-watermark-key-v1"
"""The documented default watermark key: anyone can detect (or forge) a mark made with it."""


class ProvenanceSettings(BaseSettings):
    """Watermarks and content credentials."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    watermark: bool = True
    """Embed the invisible watermark in every rendered video's frames and every generated audio
    track. Workers read it; false turns the watermark off (the content credentials stay)."""
    watermark_key: SecretStr = SecretStr(PUBLIC_WATERMARK_KEY)
    """The secret the watermark is made and detected with. The default is a public test key printed
    in the docs: a detection with it shows only that talkstack made the file, not which deployment.
    Set the same value for the workers (on Modal: the worker's environment) and for `talkstack verify`."""
    c2pa: bool = True
    """Sign C2PA content credentials into every published MP4, WAV and MP3 (in the finalize step)."""
    c2pa_secret: str = ""
    """Name or ARN of the Secrets Manager secret holding the C2PA signer: JSON with
    `certificate_chain` (PEM, signer first) and `private_key` (PEM, PKCS#8), optionally `algorithm`
    (es256, default; es384, ps256, ed25519…). Empty, or a secret not yet filled: each process signs
    with a throwaway self-signed test certificate, and the job gets a warning."""


@lru_cache(maxsize=1)
def get_provenance_settings() -> ProvenanceSettings:
    return ProvenanceSettings()
