"""talkstack: self-hosted talking-avatar, voice and text-to-video pipeline."""

__version__ = "0.1.0"
