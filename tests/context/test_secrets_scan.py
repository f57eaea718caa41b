"""Secret scanner: tokens, private key blocks, high-entropy assignments; clean text passes."""

from __future__ import annotations

import pytest

from app.context.secrets_scan import scan

AWS = "AKIA" + "IOSFODNN7EXAMPLQ"


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f"aws_access_key_id = {AWS}", "an AWS access key"),
        ("token = 'ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'", "a GitHub token"),
        ("OPENAI_API_KEY=sk-proj-" + "abcDEF123456ghiJKL789mnoPQR", "an OpenAI/Anthropic key"),
        ("XAI_KEY=xai-" + "Zq8Wm2Kd9Lp4Xr7Tn1Vb6Hs3", "an xAI key"),
        ("slack = 'xoxb-" + "123456789012-abcdefABCDEF'", "a Slack token"),
        ('api_key = "' + "q8Z7x6W5v4U3t2S1r0P9o8N7" + '"', "a password or secret assignment"),
    ],
)
def test_token_lines_withheld(line: str, kind: str) -> None:
    """Each credential shape is replaced by a visible placeholder and reported."""
    text = f"x = 1\n    {line}\ny = 2\n"
    clean, findings = scan(text)
    assert [f.line for f in findings] == [1]
    assert findings[0].kind == kind
    assert line not in clean
    assert clean.splitlines()[1].startswith("    [slipstream: line withheld")
    assert clean.splitlines()[0] == "x = 1" and clean.endswith("y = 2\n")


def test_private_key_block_withheld_whole() -> None:
    """Every line from BEGIN to END goes."""
    text = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\nb\n"
    clean, findings = scan(text)
    assert [f.line for f in findings] == [1, 2, 3, 4]
    assert "MIIEow" not in clean and clean.startswith("a\n") and clean.endswith("b\n")


def test_placeholders_and_plain_code_pass() -> None:
    """Low-entropy or placeholder values and ordinary code are not flagged."""
    text = 'api_key = "your-api-key-here-please"\npassword = "aaaaaaaaaaaaaaaaaaaa"\ndef token(): pass\n'
    clean, findings = scan(text)
    assert findings == [] and clean == text
