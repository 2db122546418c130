"""What is done to the input before a backend sees it."""

from unwalled.shield.redaction import Vault, redact_text

__all__ = ["Vault", "redact_text"]
