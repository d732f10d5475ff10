"""Secret redaction helpers."""

from __future__ import annotations

from epochal.redact import REDACTED, is_secret_name, redact_argv, redact_mapping, redact_url, safe_environment


def test_argv_values_after_secret_flags():
    argv = ["train.py", "--token", "T1", "--api-key=T2", "--password", "T3", "--x-token=T4", "--lr", "0.1",
            "https://user:T5@example.com/repo"]
    out = " ".join(redact_argv(argv))
    assert not any(f"T{i}" in out for i in range(1, 6))
    assert "--lr 0.1" in out and out.count(REDACTED) == 5


def test_urls_lose_credentials():
    assert redact_url("git clone https://bob:s3cret@github.com/x.git") == f"git clone https://{REDACTED}@github.com/x.git"
    assert redact_url("https://github.com/x.git") == "https://github.com/x.git"


def test_secret_names():
    for name in ("hub_token", "API_KEY", "password", "aws_secret_access_key", "private_key", "credentials", "auth"):
        assert is_secret_name(name), name
    for name in ("lr", "author", "monkey", "tokenizer_name", "keys_count"):
        assert not is_secret_name(name), name


def test_nested_mapping():
    out = redact_mapping({"a": {"password": "x", "url": "s3://k:v@bucket"}, "hub_token": None, "n": 1})
    assert out == {"a": {"password": REDACTED, "url": f"s3://{REDACTED}@bucket"}, "hub_token": None, "n": 1}


def test_environment_is_allow_listed():
    env = {"CUDA_VISIBLE_DEVICES": "0", "EPOCHAL_PROJECT": "p", "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root",
           "EPOCHAL_API_TOKEN": "x", "RANK": "0"}
    assert safe_environment(env) == {"CUDA_VISIBLE_DEVICES": "0", "EPOCHAL_PROJECT": "p", "RANK": "0"}
