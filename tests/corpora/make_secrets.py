"""Writes secrets.jsonl: realistic FAKE secrets in the contexts they leak from.

Every value is random, shaped after the format its vendor documents (prefix,
alphabet, length); none is a live credential. The contexts (dotenv files, JSON,
YAML, shell, code, logs, chat messages, curl commands) are where secrets turn up
in prompts. Rerun with ``python tests/corpora/make_secrets.py``; the seed is
fixed, so the file is reproducible.
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

rng = random.Random(20261203)
ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def r(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt() -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": str(rng.randint(10**5, 10**7)), "name": rng.choice(
        ["Ana Lima", "Jo Park", "Sam Reid"]), "iat": rng.randint(1.6e9, 1.8e9)}
    return f"{header}.{b64url(json.dumps(claims).encode())}.{r(URLSAFE, 43)}"


def pem() -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = "\n".join(r(B64, 64) for _ in range(rng.randint(3, 6)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def password() -> str:
    return (r(string.ascii_letters, 4) + rng.choice("!#%&*@$") + r(string.digits, 2)
            + r(ALNUM, rng.randint(4, 10)))


MAKERS = {
    "aws_access_key_id": lambda: "AKIA" + r(UPPER, 16),
    "aws_secret_access_key": lambda: r(B64, 40),
    "github_token": lambda: rng.choice(["ghp_", "gho_", "ghs_"]) + r(ALNUM, 36),
    "github_fine_grained_token": lambda: f"github_pat_{r(ALNUM, 22)}_{r(ALNUM, 59)}",
    "gitlab_token": lambda: "glpat-" + r(URLSAFE, 20),
    "slack_token": lambda: (f"{rng.choice(['xoxb', 'xoxp'])}-{r(string.digits, 12)}-"
                            f"{r(string.digits, 13)}-{r(ALNUM, 24)}"),
    "slack_webhook": lambda: (f"https://hooks.slack.com/services/T{r(UPPER, 8)}/"
                              f"B{r(UPPER, 10)}/{r(ALNUM, 24)}"),
    "stripe_key": lambda: rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + r(ALNUM, 24),
    "openai_key": lambda: rng.choice(["sk-" + r(ALNUM, 48),
                                      "sk-proj-" + r(URLSAFE, 120) + r(ALNUM, 4)]),
    "anthropic_key": lambda: "sk-ant-api03-" + r(URLSAFE, 93) + "AA",
    "google_api_key": lambda: "AIza" + r(URLSAFE, 35),
    "google_oauth_secret": lambda: "GOCSPX-" + r(URLSAFE, 28),
    "twilio_api_key": lambda: "SK" + r(HEX, 32),
    "sendgrid_key": lambda: f"SG.{r(URLSAFE, 22)}.{r(URLSAFE, 43)}",
    "mailgun_key": lambda: "key-" + r(HEX, 32),
    "npm_token": lambda: "npm_" + r(ALNUM, 36),
    "pypi_token": lambda: "pypi-AgEIcHlwaS5vcmc" + r(URLSAFE, 70),
    "huggingface_token": lambda: "hf_" + r(string.ascii_letters, 34),
    "digitalocean_token": lambda: "dop_v1_" + r(HEX, 64),
    "shopify_token": lambda: "shpat_" + r(HEX, 32),
    "databricks_token": lambda: "dapi" + r(HEX, 32),
    "telegram_bot_token": lambda: f"{r(string.digits, 10)}:AA{r(URLSAFE, 33)}",
    "jwt": jwt,
    "private_key": pem,
    "connection_string_password": password,
    "azure_storage_key": lambda: r(B64, 86) + "==",
    "assigned_secret": password,
}

CONTEXTS = {
    "aws_secret_access_key": ["aws_secret_access_key = {s}",
                              "AWS_SECRET_ACCESS_KEY={s}",
                              '"aws_secret_key": "{s}"'],
    "connection_string_password": [
        "DATABASE_URL=postgresql://app:{s}@db.internal:5432/orders",
        "mongo uri is mongodb+srv://admin:{s}@cluster0.example.net/test",
        "redis://default:{s}@cache.example.com:6379/0"],
    "azure_storage_key": [
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s};"
        "EndpointSuffix=core.windows.net"],
    "assigned_secret": ["DB_PASSWORD={s}", "password: \"{s}\"",
                        "client_secret = '{s}'", "\"apiKey\": \"{s}\"",
                        "SECRET_KEY={s}"],
}
GENERIC = [
    "{s}",
    "export TOKEN=\"{s}\"",
    "my key is {s} can you check why it fails?",
    "  api: {{token: {s}}}",
    "curl -H 'Authorization: Bearer {s}' https://api.example.com/v1/me",
    "config = {{\"key\": \"{s}\", \"region\": \"eu-west-1\"}}",
    "2026-11-02 10:14:03 DEBUG using credential {s} for upload",
    "Here is the value from the vault: `{s}` (rotated yesterday)",
    "client = Client(\"{s}\")",
]


def main() -> None:
    rows = []
    kinds = list(MAKERS)
    for i in range(135):
        kind = kinds[i % len(kinds)]
        secret = MAKERS[kind]()
        template = rng.choice(CONTEXTS.get(kind, GENERIC))
        text = template.format(s=secret)
        rows.append({"kind": kind, "text": text, "secret": secret})
    out = Path(__file__).with_name("secrets.jsonl")
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"{len(rows)} secrets of {len(kinds)} kinds -> {out}")


if __name__ == "__main__":
    main()
