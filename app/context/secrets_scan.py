"""Hold back lines that look like credentials before they leave the machine.

Applied to every text that goes to the model: the new text of each context update (added diff lines,
created files), the snapshot, and the output of `read_file` and `search`. A flagged line is replaced
by a visible placeholder so the model knows something was withheld, and a `Finding` goes to the UI
as a notice. Whole private-key blocks are withheld from BEGIN to END.

Detection is layered:

1. The maintained detect-secrets plugin set (Yelp's `detect-secrets`, pinned): its regex detectors
   (AWS, Azure storage, GitHub, GitLab, Slack, Stripe, SendGrid, npm, PyPI, OpenAI, JWTs, basic-auth
   URLs, private keys, Twilio, Discord, Telegram, ...) and its keyword detector in its config-file
   flavour, which also catches unquoted `password: x` / `DB_PASSWORD=x`. Only their pure
   `analyze_string` is used: no settings, no files, no network (verification is never run).
2. Patterns detect-secrets 1.5 lacks: Hugging Face `hf_`, bare `npm_` tokens, Google `AIza`, xAI,
   Anthropic, Azure AD client secrets and SAS signatures, database URLs with a password, kubeconfig
   `token:` and `client-key-data:`.
3. An entropy check on values assigned to secret-sounding keys (token, credential, bearer, ...).

Values that are clearly placeholders (`changeme`, `<your key>`, `${VAR}`, `os.environ[...]`) pass.

detect-secrets imports `requests` at module level for its `verify()` step, which is never run here;
`requests` is ~6 MB resident (urllib3, charset_normalizer, idna, certifi, ...), 5% of the idle app.
The plugins are imported with a stand-in for it (`_RequestsOnUse`) that loads the real `requests` the
first time anything uses it.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
import types
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class _RequestsOnUse(types.ModuleType):
    """What detect-secrets' modules see as `requests`: the real module, loaded on first use.

    While the plugins are being imported an attribute read can only be an annotation evaluated at
    definition time (`-> requests.Response` in two plugins); it gets `Any`. After that, any use (a
    `verify()`, which this module never calls) imports the real `requests` and forwards to it.
    """

    def __init__(self) -> None:
        super().__init__("requests", "Loaded on first use by app.context.secrets_scan.")
        self.importing = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self.importing:
            return Any
        return getattr(importlib.import_module("requests"), name)


def _import_detect_secrets() -> None:
    """Import the detect-secrets plugins without loading `requests` (see the module docstring)."""
    if "requests" in sys.modules:  # loaded already (by someone else): nothing to save
        return
    stand_in = _RequestsOnUse()
    sys.modules["requests"] = stand_in
    try:
        import detect_secrets.plugins.keyword  # noqa: F401
        from detect_secrets import plugins

        for name in _PLUGIN_MODULES:
            importlib.import_module(f"{plugins.__name__}.{name}")
    finally:
        if sys.modules.get("requests") is stand_in:
            del sys.modules["requests"]  # whoever imports `requests` next gets the real one
        stand_in.importing = False


# detect-secrets' regex plugins used here (module names under detect_secrets.plugins).
_PLUGIN_MODULES = (
    "artifactory", "aws", "azure_storage_key", "basic_auth", "cloudant", "discord", "github_token",
    "gitlab_token", "ibm_cloud_iam", "ibm_cos_hmac", "jwt", "mailchimp", "npm", "openai", "private_key",
    "pypi_token", "sendgrid", "slack", "softlayer", "square_oauth", "stripe", "telegram_token", "twilio",
)  # fmt: skip
_import_detect_secrets()

from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, KeywordDetector  # noqa: E402

__all__ = ["PLACEHOLDER", "Finding", "redact_for_model", "scan", "scan_lines"]

PLACEHOLDER = "[slipstream: line withheld, looks like {kind}]"


class _Detector(Protocol):
    @property
    def secret_type(self) -> str: ...

    def analyze_string(self, string: str) -> Iterable[str]: ...


def _regex_detectors() -> list[_Detector]:
    """detect-secrets' regex plugins, each as it ships."""
    from detect_secrets.plugins import (
        artifactory,
        aws,
        azure_storage_key,
        basic_auth,
        cloudant,
        discord,
        github_token,
        gitlab_token,
        ibm_cloud_iam,
        ibm_cos_hmac,
        jwt,
        mailchimp,
        npm,
        openai,
        private_key,
        pypi_token,
        sendgrid,
        slack,
        softlayer,
        square_oauth,
        stripe,
        telegram_token,
        twilio,
    )

    classes: list[Any] = [
        artifactory.ArtifactoryDetector, aws.AWSKeyDetector, azure_storage_key.AzureStorageKeyDetector,
        basic_auth.BasicAuthDetector, cloudant.CloudantDetector, discord.DiscordBotTokenDetector,
        github_token.GitHubTokenDetector, gitlab_token.GitLabTokenDetector, ibm_cloud_iam.IbmCloudIamDetector,
        ibm_cos_hmac.IbmCosHmacDetector, jwt.JwtTokenDetector, mailchimp.MailchimpDetector, npm.NpmDetector,
        openai.OpenAIDetector, private_key.PrivateKeyDetector, pypi_token.PypiTokenDetector,
        sendgrid.SendGridDetector, slack.SlackDetector, softlayer.SoftlayerDetector,
        square_oauth.SquareOAuthDetector, stripe.StripeDetector, telegram_token.TelegramBotTokenDetector,
        twilio.TwilioKeyDetector,
    ]  # fmt: skip
    return [cls() for cls in classes]


_DETECTORS: list[_Detector] = _regex_detectors()
_KEYWORD = KeywordDetector()
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")

_EXTRA_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})")),
    ("a Telegram bot token", re.compile(r"\b\d{8,10}:AA[0-9A-Za-z_\-]{30,40}\b")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("an npm token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("a GitLab token", re.compile(r"\bgl(?:pat|dt|rt|ptt|ft|imt|oas|cbt|soat|agent)-[A-Za-z0-9_\-]{20,}")),
    ("a SendGrid key", re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    ("an xAI key", re.compile(r"\bxai-[A-Za-z0-9]{20,}")),
    (
        "an OpenAI/Anthropic key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_\-]{20,}"),
    ),
    (
        "an Azure client secret",
        re.compile(r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}\d?Q~[A-Za-z0-9_~.\-]{31,34}"),
    ),
    ("an Azure SAS signature", re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{30,}")),
    ("an Azure connection string", re.compile(r"(?i)(?:AccountKey|SharedAccessKey)=[A-Za-z0-9+/=]{30,}")),
    (
        "a database URL with a password",
        re.compile(r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://[^\s:/@'\"]*:[^\s@/'\"]{3,}@[^\s/'\"]+"),
    ),
    (
        "a kubeconfig credential",
        re.compile(r"(?i)\b(?:client-key-data|token)\s*:\s*['\"]?[A-Za-z0-9+/=_.\-]{20,}"),
    ),
    ("a Slack webhook", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}")),
    ("a Stripe key", re.compile(r"\b[rs]k_(?:live|test)_[0-9a-zA-Z]{20,}")),
)
_PRIVATE_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_ASSIGNMENT = re.compile(
    r"(?i)(?:api[_-]?key|secret|token|bearer|credential|passw(?:or)?d|pwd|access[_-]?key|auth[_-]?key"
    r"|client[_-]?secret|private[_-]?key|signing[_-]?key|session[_-]?key|salt)"
    r"[A-Za-z0-9_\-]*['\"]?\s*(?::=|[:=]{1,2}|=>)\s*['\"]?([^'\"\s,;]{8,})"
)
_PLACEHOLDER_WORDS = (
    "example",
    "changeme",
    "change_me",
    "your",
    "xxxx",
    "dummy",
    "placeholder",
    "redacted",
    "<",
    "${",
    "{{",
    "%(",
    "null",
    "none",
    "todo",
    "fixme",
    "****",
)
_CODE_VALUE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(|\[|$)")


@dataclass(frozen=True, slots=True)
class Finding:
    """One withheld line: 0-based line index in the scanned text, what it looked like."""

    line: int
    kind: str


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _placeholder(value: str) -> bool:
    low = value.lower()
    return any(w in low for w in _PLACEHOLDER_WORDS) or low.startswith(("$", "%", "@"))


def _looks_like_code(value: str) -> bool:
    """`os.environ["X"]`, `get_password()`, `self.token`: a reference, not a literal secret."""
    return bool(_CODE_VALUE.match(value)) and ("." in value or "(" in value or "[" in value)


_KIND_NAMES = {
    "Secret Keyword": "a password or secret assignment",
    "Basic Auth Credentials": "a URL with a password",
    "JSON Web Token": "a JWT",
}


def _kind_name(secret_type: str) -> str:
    """detect-secrets' 'GitHub Token' -> 'a GitHub token', 'AWS Access Key' -> 'an AWS access key'."""
    if secret_type in _KIND_NAMES:
        return _KIND_NAMES[secret_type]
    words = secret_type.split()
    words = words[:1] + [
        w if (w.isupper() or any(c.isupper() for c in w[1:])) else w.lower() for w in words[1:]
    ]
    text = " ".join(words)
    return ("an " if text[:1].lower() in "aeiou" else "a ") + text


# A line can hold a secret only if it has a secret-sounding word, a credential URL, or a long token-like
# run (every detector above needs one of the three): most lines are ruled out by this one search.
_MAYBE = re.compile(
    r"(?i)key|pass|pwd|secret|contrase|token|bearer|credential|salt|auth|sig=|://[^\s/]*:[^\s/]*@"
    r"|[A-Za-z0-9+/_~.=\-]{20,}"
)


def _line_kind(line: str) -> str | None:
    if len(line) < 8 or not _MAYBE.search(line):
        return None
    for det in _DETECTORS:
        for value in det.analyze_string(line):
            if value and not _placeholder(value):
                return _kind_name(det.secret_type)
    for kind, pat in _EXTRA_PATTERNS:
        m = pat.search(line)
        if m and not _placeholder(m.group(0).split(":", 1)[-1]):
            return kind
    if _JWT.search(line):
        return "a JWT"
    for value in _KEYWORD.analyze_string(line, CONFIG_DENYLIST_REGEX_TO_GROUP):
        v = value.strip().strip("'\"")
        if (
            len(v) >= 4
            and _entropy(v) >= 1.5
            and not _placeholder(v)
            and not _looks_like_code(v)
            and v.lower() not in ("true", "false")
        ):
            return "a password or secret assignment"
    m = _ASSIGNMENT.search(line)
    if m:
        value = m.group(1)
        if _entropy(value) >= 3.0 and not _placeholder(value) and not _looks_like_code(value):
            return "a high-entropy secret assignment"
    return None


def scan_lines(lines: Sequence[str]) -> tuple[list[str], list[Finding]]:
    """Scan lines (with or without line endings); flagged ones become placeholders, ending kept."""
    out: list[str] = []
    findings: list[Finding] = []
    in_key = False
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        kind: str | None
        if in_key:
            kind = "a private key"
            if _PRIVATE_END.search(body):
                in_key = False
        elif _PRIVATE_BEGIN.search(body):
            kind = "a private key"
            in_key = not _PRIVATE_END.search(body)
        else:
            kind = _line_kind(body)
        if kind is None:
            out.append(line)
        else:
            findings.append(Finding(i, kind))
            indent = body[: len(body) - len(body.lstrip())]
            out.append(indent + PLACEHOLDER.format(kind=kind) + ending)
    return out, findings


def scan(new_text: str) -> tuple[str, list[Finding]]:
    """Return the text with credential-looking lines withheld, plus what was found."""
    if not new_text:
        return new_text, []
    lines, findings = scan_lines(new_text.splitlines(keepends=True))
    return ("".join(lines) if findings else new_text), findings


def redact_for_model(text: str) -> tuple[str, list[str]]:
    """A tool's output with secrets withheld, ending with a visible notice; plus the notice lines."""
    cleaned, findings = scan(text)
    if not findings:
        return text, []
    kinds = sorted({f.kind for f in findings})
    notice = (
        f"[slipstream: {len(findings)} line{'s' if len(findings) != 1 else ''} withheld from this output "
        f"because they look like credentials ({', '.join(kinds)}); ask the user if you need them]"
    )
    return cleaned.rstrip("\n") + "\n" + notice, [notice]
