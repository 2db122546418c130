"""Secrets in an answer: API keys, tokens, private keys, high-entropy strings.

The findings are the shield's (``unwalled.shield.secrets``), so what the input
shield redacts and what this check refuses agree: vendor key shapes anchored on
their fixed prefixes, private keys, JWTs, credentials in URLs, ``password =
...`` assignments whose value looks random. This check adds long random-looking
strings of no known shape (``entropy``), an allow-list of values, and messages
that name the kind and mask the value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, disguised, mask, span
from unwalled.contracts.verdict import Violation
from unwalled.shield.secrets import SecretFinding, find_high_entropy, find_secrets

NAMES = {
    "private_key": "private key", "anthropic_key": "Anthropic key",
    "openai_key": "OpenAI key", "unwalled_key": "Unwalled key",
    "aws_access_key_id": "AWS access key id",
    "aws_secret_access_key": "AWS secret access key", "github_token": "GitHub token",
    "github_fine_grained_token": "GitHub token", "gitlab_token": "GitLab token",
    "slack_token": "Slack token", "slack_webhook": "Slack webhook",
    "stripe_key": "Stripe key", "google_api_key": "Google API key",
    "google_oauth_secret": "Google OAuth secret", "twilio_api_key": "Twilio key",
    "sendgrid_key": "SendGrid key", "mailgun_key": "Mailgun key",
    "npm_token": "npm token", "pypi_token": "PyPI token",
    "huggingface_token": "Hugging Face token",
    "digitalocean_token": "DigitalOcean token", "shopify_token": "Shopify token",
    "databricks_token": "Databricks token", "square_token": "Square token",
    "telegram_bot_token": "Telegram bot token",
    "discord_bot_token": "Discord bot token", "age_secret_key": "age secret key",
    "azure_storage_key": "Azure storage key", "jwt": "JSON Web Token",
    "url_password": "credentials in URL", "mailchimp_key": "Mailchimp key",
    "artifactory_token": "Artifactory token",
    "bearer_token": "bearer token", "assigned_password": "password assignment",
    "assigned_secret": "secret or key assignment",
    "high_entropy": "high-entropy string",
}
"""How each kind of finding is named in a message."""


class SecretsOptions(Options):
    kind: Literal["secrets"] = "secrets"
    entropy: bool = True
    """Also flag long random-looking strings that match no known shape."""
    base64_limit: float = Field(4.5, ge=0, le=8)
    hex_limit: float = Field(3.0, ge=0, le=4)
    allow: list[str] = Field(default_factory=list)
    """Exact strings that are known not to be secrets (e.g. documented examples)."""


class SecretsCheck(Check):
    kind = "secrets"
    reads_calls = True
    options: SecretsOptions

    def __init__(self, options: SecretsOptions) -> None:
        super().__init__(options)
        self.allowed = frozenset(options.allow)

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            plain = self._findings(text)
            for finding in plain:
                where = span(finding.start, finding.end) if path == "text" else path
                found.append(self.violation(where, (
                    f"{_name(finding)} ({mask(finding.value)}): an answer must never "
                    "carry credentials")))
            seen = {f.value for f in plain}
            for finding in disguised(text, self._findings, seen):
                found.append(self.violation(path, (
                    f"{_name(finding)} ({mask(finding.value)}), written in disguise "
                    "(entities, look-alike or invisible characters): an answer must "
                    "never carry credentials")))
        return found

    def _findings(self, text: str) -> list[SecretFinding]:
        """Known shapes first, then random-looking runs none of them covers (an
        allowed value is not reported, and not reported again as random)."""
        shapes = find_secrets(text)
        findings = [f for f in shapes if f.value not in self.allowed]
        if self.options.entropy:
            findings += [f for f in find_high_entropy(text, self.options.base64_limit,
                                                      self.options.hex_limit)
                         if f.value not in self.allowed and not _overlaps(f, shapes)]
        return sorted(findings, key=lambda f: f.start)


def _name(finding: SecretFinding) -> str:
    return NAMES.get(finding.kind, finding.kind.replace("_", " "))


def _overlaps(finding: SecretFinding, others: list[SecretFinding]) -> bool:
    return any(finding.start < o.end and o.start < finding.end for o in others)


def build(options: SecretsOptions) -> SecretsCheck:
    return SecretsCheck(options)
