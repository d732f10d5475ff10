"""Secret redaction: one function for every string that reaches disk; whole-word secret names."""

from __future__ import annotations

import secrets

import pytest

import epochal
from epochal.redact import (
    REDACTED, is_secret_name, looks_like_credential, redact, redact_argv, redact_text, redact_url,
    safe_environment,
)
from epochal.store import read_json


def test_argv_values_after_secret_flags():
    argv = ["train.py", "--token", "T1", "--api-key=T2", "--password", "T3", "--x-token=tok9f8e7d6c5b4a",
            "--lr", "0.1", "https://user:T5@example.com/repo", "--max-new-tokens", "20", "--eos-token-id=2"]
    out = " ".join(redact_argv(argv))
    assert not any(f"T{i}" in out for i in (1, 2, 3, 5)) and "tok9f8e7d6c5b4a" not in out
    assert "--lr 0.1" in out and out.count(REDACTED) == 5
    assert "--max-new-tokens 20" in out and "--eos-token-id=2" in out


def test_urls_lose_credentials():
    assert redact_url("git clone https://bob:s3cret@github.com/x.git") == f"git clone https://{REDACTED}@github.com/x.git"
    assert redact_url("https://github.com/x.git") == "https://github.com/x.git"


@pytest.mark.parametrize("name", [
    "hub_token", "hf_token", "HF_TOKEN", "MY_API_TOKEN", "token", "access_token", "hubToken", "API_KEY", "apiKey",
    "api-key", "password", "db_password", "aws_secret_access_key", "AWS_ACCESS_KEY_ID", "private_key",
    "credentials", "auth", "client_secret", "Authorization", "session_key",
])
def test_secret_names(name):
    assert is_secret_name(name), name


@pytest.mark.parametrize(("name", "value"), [
    ("lr", 0.1), ("author", "me"), ("monkey", "x"), ("tokenizer_name", "gpt2"), ("keys_count", 3),
    ("max_new_tokens", 20), ("eos_token_id", 2), ("bos_token_id", 1), ("num_tokens_seen", 1000),
    ("sort_key", "loss"), ("average_tokens_across_devices", True), ("include_num_input_tokens_seen", True),
    ("pad_token", "<pad>"), ("eos_token", "</s>"), ("token_type_ids", [0, 1]), ("primary_key", "id"),
])
def test_plain_parameters_are_not_secret(name, value):
    assert not is_secret_name(name, value)
    assert redact({name: value}) == {name: value}


def test_weak_names_hide_credential_looking_values():
    assert is_secret_name("x_token", "tok9f8e7d6c5b4a3") and not is_secret_name("x_token", "<unk>")
    assert is_secret_name("openai_key", "sk-" + "a1" * 15) and not is_secret_name("openai_key")
    assert looks_like_credential("hf_" + "Ab1" * 12) and not looks_like_credential("/tmp/model.pt")


def test_any_nesting_lists_included():
    config = {
        "mirrors": ["https://u:S3cretPw@h/x", "https://plain/x"],
        "accounts": [{"user": "a", "password": "S3cretPw"}, ("t", {"api_key": "K"})],
        "a": {"password": "x", "url": "s3://k:v@bucket", "deep": [[{"token": "T"}]]},
        "hub_token": None, "n": 1, "use_auth_token": False,
    }
    out = redact(config)
    assert "S3cretPw" not in repr(out) and "'K'" not in repr(out) and "'T'" not in repr(out)
    assert out["mirrors"] == [f"https://{REDACTED}@h/x", "https://plain/x"]
    assert out["accounts"][0] == {"user": "a", "password": REDACTED}
    assert out["a"]["url"] == f"s3://{REDACTED}@bucket"
    assert out["hub_token"] is None and out["n"] == 1 and out["use_auth_token"] is False


def test_text_pairs_and_credential_formats():
    hf = "hf_" + "aB3" * 12
    text = (f"login failed: password=hunter2 token: {hf} Authorization: Bearer abc.def.ghi "
            f"max_new_tokens=20 at https://bob:pw@host/x")
    out = redact_text(text)
    for secret in ("hunter2", hf, "abc.def.ghi", "bob:pw"):
        assert secret not in out
    assert "max_new_tokens=20" in out and "login failed" in out


def test_environment_is_allow_listed():
    env = {"CUDA_VISIBLE_DEVICES": "0", "EPOCHAL_PROJECT": "p", "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root",
           "EPOCHAL_API_TOKEN": "x", "RANK": "0"}
    assert safe_environment(env) == {"CUDA_VISIBLE_DEVICES": "0", "EPOCHAL_PROJECT": "p", "RANK": "0"}


def _leaks(run, secret: str) -> list[str]:
    files = [p for p in run.dir.rglob("*") if p.is_file()]
    return [str(p.relative_to(run.dir)) for p in files if secret.encode() in p.read_bytes()]


def test_five_leak_vectors_reach_no_file(monkeypatch):
    """Config lists, list of dicts, notes= and tags= at init, exception text as `error`, TensorBoard."""
    canary = "cnry" + secrets.token_hex(10)
    config = {"mirrors": [f"https://u:{canary}@h/x"], "accounts": [{"password": canary}],
              "max_new_tokens": 20, "eos_token_id": 2, "sort_key": "loss", "num_tokens_seen": 7}
    run = epochal.init(project="leaks", config=config, notes=f"db at postgres://u:{canary}@db/x",
                       tags=[f"https://bob:{canary}@h", "plain"], sinks=["tensorboard"], system_interval=0)
    run.log({"loss": 1.0})
    try:
        raise RuntimeError(f"connect https://u:{canary}@host failed; password={canary}")
    except RuntimeError as exc:
        import traceback

        run.finish("failed", error="".join(traceback.format_exception(exc)))
    assert _leaks(run, canary) == []
    meta = read_json(run.dir / "run.json")
    assert meta["tags"][1] == "plain" and "RuntimeError" in meta["error"] and REDACTED in meta["error"]
    stored = read_json(run.dir / "config.json")
    assert {k: stored[k] for k in ("max_new_tokens", "eos_token_id", "sort_key", "num_tokens_seen")} == {
        "max_new_tokens": 20, "eos_token_id": 2, "sort_key": "loss", "num_tokens_seen": 7}
    assert any("tfevents" in p.name for p in (run.dir / "tensorboard").iterdir())
