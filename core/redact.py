"""Secret redaction for everything that reaches disk: config keys, argv, URLs, environment."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

__all__ = ["REDACTED", "is_secret_name", "redact_url", "redact_text", "redact_argv", "redact_mapping", "safe_environment"]

REDACTED = "***"
_SECRET_NAME = re.compile(
    r"(pass(word|wd)?|secret|token(?!i[sz]er)|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth([-_]|$)|authorization|cookie|session[-_]?key|"
    r"(^|[-_.])key$)",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s:]+(:[^/@\s]*)?)@")
_ENV_ALLOW = re.compile(r"^(CUDA_VISIBLE_DEVICES|EPOCHAL_\w+|(LOCAL_)?RANK|WORLD_SIZE|NODE_RANK|OMP_NUM_THREADS|SLURM_(JOB_ID|PROCID|NTASKS|LOCALID))$")


def is_secret_name(name: str) -> bool:
    """Whether a config key, flag or variable name looks like it holds a secret."""
    return bool(_SECRET_NAME.search(str(name).lstrip("-")))


def redact_url(text: str) -> str:
    """Strip ``user:password@`` from every URL in ``text``."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact URL credentials and any of the given secret values."""
    text = redact_url(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Redact values after secret-looking flags: ``--token X``, ``--api-key=X``, ``--password X``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and "=" in arg:
            flag, _, _value = arg.partition("=")
            out.append(f"{flag}={REDACTED}" if is_secret_name(flag) else redact_url(arg))
            continue
        if arg.startswith("-") and is_secret_name(arg):
            hide_next = True
        out.append(redact_url(arg))
    return out


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of a (nested) mapping with secret-named keys replaced and URL credentials stripped."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if is_secret_name(key) and value not in (None, "", False):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, str):
            out[key] = redact_url(value)
        elif isinstance(value, list):
            out[key] = [redact_url(v) if isinstance(v, str) else redact_mapping(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


def safe_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed environment variables only; never the whole environment."""
    return {k: redact_url(v) for k, v in sorted(environ.items()) if _ENV_ALLOW.match(k) and not is_secret_name(k)}
