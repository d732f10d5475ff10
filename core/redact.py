"""The one redaction of secrets, applied to every string that reaches disk.

:func:`redact` takes any JSON-like value (dicts, lists, tuples, strings, numbers, any
nesting) and returns a copy with secrets replaced by ``***``. Every writer calls it:
config, summary and run.json (tags, notes, the ``error`` text) at the run's boundary,
artifact metadata, environment files, TensorBoard text and hparams.

What counts as a secret:

- **A value under a secret name.** Names are split into whole words (``_ - . /``,
  spaces and camelCase boundaries: ``hubToken`` -> ``hub token``). A name is secret when

  * a word is ``password``/``passwd``/``passphrase``, ``secret(s)``, ``credential(s)``,
    ``cookie(s)``, ``authorization``, ``auth``, ``bearer``, ``apikey`` or ``privatekey``;
  * ``key`` follows a qualifier such as ``api``, ``access``, ``private``, ``session``,
    ``signing``, ``encryption``, ``ssh`` (``api_key``, ``AWS_ACCESS_KEY``, ``apiKey``);
  * the last word is ``token`` and the name is ``token`` or holds a qualifier such as
    ``hf``, ``hub``, ``access``, ``auth``, ``api``, ``refresh``, ``github``, ``wandb``
    (``hf_token``, ``MY_API_TOKEN``, ``access_token``).

  Weaker names are secret only when the **value looks like a credential** (see
  :func:`looks_like_credential`): any other name whose last word is ``token`` or
  ``key`` (``x_token``, ``openai_key``; but ``pad_token="<pad>"`` and
  ``sort_key="loss"`` are kept). ``tokens`` (plural) and ``token`` followed by another
  word are never secret: ``max_new_tokens``, ``eos_token_id``, ``num_tokens_seen``,
  ``average_tokens_across_devices`` are plain parameters. Empty values, ``None`` and
  booleans are never replaced (``use_auth_token=False`` stays readable).
- **Inside any string** (notes, tags, error text, URLs, config strings):
  ``user:password@`` in URLs, ``name=value`` / ``name: value`` pairs whose name is
  secret by the rule above (``password=hunter2``, ``Authorization: Bearer ...``),
  well-known credential formats (``hf_...``, ``sk-...``, ``ghp_...``, ``AKIA...``,
  JWTs, ...), and the values of secret-named environment variables and secret argv
  flags of this process, wherever they appear.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Iterable, Mapping

__all__ = [
    "REDACTED", "redact", "is_secret_name", "looks_like_credential", "redact_url", "redact_text",
    "redact_argv", "secret_values", "safe_environment",
]

REDACTED = "***"
_UNSET: Any = object()

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_ALWAYS_WORDS = frozenset({
    "password", "passwords", "passwd", "passphrase", "secret", "secrets", "credential", "credentials",
    "cookie", "cookies", "authorization", "auth", "bearer", "apikey", "privatekey",
})
_KEY_QUALIFIERS = frozenset({
    "api", "access", "private", "session", "signing", "encryption", "master", "license", "ssh", "account",
    "subscription", "storage", "client", "app", "deploy", "secret",
})
_TOKEN_QUALIFIERS = frozenset({
    "hf", "hub", "huggingface", "access", "auth", "api", "bearer", "refresh", "github", "gh", "gitlab", "wandb",
    "oauth", "session", "csrf", "slack", "bot", "personal", "id", "security", "app", "user", "service", "mlflow",
    "comet", "neptune", "npm", "pypi", "discord", "telegram", "jwt", "kaggle", "openai", "anthropic", "aws",
})
_KNOWN_FORMATS = (
    r"hf_[A-Za-z0-9]{30,}", r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}", r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_[A-Za-z0-9_]{30,}", r"glpat-[A-Za-z0-9_-]{20,}", r"xox[abprs]-[A-Za-z0-9-]{10,}",
    r"AKIA[0-9A-Z]{16}", r"AIza[0-9A-Za-z_-]{35}", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
)
_CREDENTIAL = re.compile(r"(?<![A-Za-z0-9_-])(?:" + "|".join(_KNOWN_FORMATS) + r")")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s:]+(:[^/@\s]*)?)@")
_ASSIGNMENT = re.compile(
    r"(?P<name>[A-Za-z][A-Za-z0-9_.-]{0,63})(?P<sep>[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?P<value>(?:(?:Bearer|Basic|Token)[ \t]+)?[^\s\"',;&)}\]]+)"
)
_ENV_ALLOW = re.compile(r"^(CUDA_VISIBLE_DEVICES|EPOCHAL_\w+|(LOCAL_)?RANK|WORLD_SIZE|NODE_RANK|OMP_NUM_THREADS|SLURM_(JOB_ID|PROCID|NTASKS|LOCALID))$")
_PLAIN_VALUES = frozenset({"true", "false", "none", "null", "yes", "no", "enabled", "disabled"})


# -- names and values --------------------------------------------------------------------------
def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


@functools.lru_cache(maxsize=4096)
def _name_kind(name: str) -> str:
    """``"always"`` (a secret name), ``"maybe"`` (secret if the value looks like a credential) or ``""``."""
    words = _words(str(name))
    if not words:
        return ""
    if _ALWAYS_WORDS.intersection(words):
        return "always"
    for before, after in zip(words, words[1:]):
        if after == "key" and before in _KEY_QUALIFIERS:
            return "always"
    last = words[-1]
    if last == "token":
        return "always" if len(words) == 1 or _TOKEN_QUALIFIERS.intersection(words[:-1]) else "maybe"
    if last == "key":
        return "maybe"
    return ""


def looks_like_credential(value: Any) -> bool:
    """Whether a string looks like a key or token: a known format, or 12+ characters without spaces mixing
    letters and digits (``"<pad>"``, ``"loss"``, ``"/path/to/x"`` do not)."""
    if not isinstance(value, str):
        return False
    if _CREDENTIAL.search(value):
        return True
    return (12 <= len(value) <= 4096 and not any(c.isspace() for c in value) and value[0] not in "/.<~"
            and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))


def is_secret_name(name: str, value: Any = _UNSET) -> bool:
    """Whether a config key, flag or variable ``name`` (holding ``value``, when given) must be redacted.

    Without ``value`` only names that are secret whatever they hold count.
    """
    kind = _name_kind(str(name).lstrip("-"))
    if kind == "maybe":
        return value is not _UNSET and looks_like_credential(value)
    return kind == "always"


def _hides(name: Any, value: Any) -> bool:
    """A value under ``name`` is replaced as a whole: secret name, and a value worth hiding."""
    if value is None or value == "" or isinstance(value, bool):
        return False
    return is_secret_name(str(name), value)


# -- strings ------------------------------------------------------------------------------------
def redact_url(text: str) -> str:
    """Strip ``user:password@`` from every URL in ``text``."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)


def _redact_assignments(text: str) -> str:
    """Replace the value of every ``name=value`` / ``name: value`` whose name is secret (names may chain:
    in ``failed: password=x`` the value of ``failed`` is searched again for its own pair)."""
    parts: list[str] = []
    pos = 0
    while (match := _ASSIGNMENT.search(text, pos)) is not None:
        value = match.group("value")
        if value != REDACTED and is_secret_name(match.group("name"), value.split(None, 1)[-1]):
            parts.append(text[pos : match.start("value")] + REDACTED)
            pos = match.end("value")
        else:
            parts.append(text[pos : match.start("value")])
            pos = match.start("value")
    parts.append(text[pos:])
    return "".join(parts)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials, secret ``name=value`` pairs, credential-shaped words and the
    given (plus this process's known) secret values replaced."""
    return _redact_string(text, [*secrets, *_process_secrets()])


def _redact_string(text: str, known: Iterable[str]) -> str:
    if "@" in text:
        text = redact_url(text)
    if ":" in text or "=" in text:
        text = _redact_assignments(text)
    text = _CREDENTIAL.sub(REDACTED, text)
    for secret in known:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    return text


# -- any value ----------------------------------------------------------------------------------
def redact(value: Any, key: Any = None) -> Any:
    """A copy of ``value`` (any nesting of dicts, lists, tuples, strings) with every secret replaced by ``***``.

    ``key`` is the name ``value`` is stored under, if any: a secret name hides the whole value.
    Numbers, booleans and None pass through; tuples become lists; dict keys become strings.
    """
    return _redact(value, key, _process_secrets())


def _redact(value: Any, key: Any, known: list[str]) -> Any:
    if key is not None and _hides(key, value):
        return REDACTED
    if isinstance(value, str):
        return _redact_string(value, known) if value else value
    if isinstance(value, Mapping):
        return {_redact_string(str(k), known): _redact(v, k, known) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, None, known) for v in value]
    return value


def redact_mapping(values: Mapping[str, Any]) -> Any:
    """:func:`redact` of a mapping (the older name, kept for callers)."""
    return redact(values)


# -- argv and the environment -----------------------------------------------------------------
def redact_argv(argv: Iterable[str]) -> list[str]:
    """Redact values after secret flags (``--token X``, ``--api-key=X``, ``--password X``) and in every argument."""
    args = [str(a) for a in argv]
    out: list[str] = []
    hide_next = False
    for index, arg in enumerate(args):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and "=" in arg:
            flag, _, value = arg.partition("=")
            out.append(f"{flag}={REDACTED}" if _hides(flag, value) else redact_text(arg))
            continue
        if arg.startswith("-") and index + 1 < len(args) and not args[index + 1].startswith("-"):
            hide_next = _hides(arg, args[index + 1])
        out.append(redact_text(arg))
    return out


def _secret_like(value: str) -> bool:
    """Long and specific enough that replacing it everywhere cannot mangle ordinary text ("true", "1", paths)."""
    return len(value) >= 6 and not value.isdigit() and value.lower() not in _PLAIN_VALUES and not value.startswith("/")


def secret_values(environ: Mapping[str, str] | None = None, argv: Iterable[str] | None = None) -> list[str]:
    """Values that must never be written: those of secret-named environment variables and argv flags, longest first."""
    environ = os.environ if environ is None else environ
    args = [str(a) for a in (sys.argv if argv is None else argv)]
    values = [v for k, v in environ.items() if _hides(k, v)]
    for index, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        flag, eq, value = arg.partition("=")
        if not eq and index + 1 < len(args):
            value = args[index + 1]
        if value and _hides(flag, value):
            values.append(value)
    return sorted({v for v in values if _secret_like(v)}, key=len, reverse=True)


_cache: tuple[dict[Any, Any] | None, list[str] | None, list[str]] = (None, None, [])


def _process_secrets() -> list[str]:
    """:func:`secret_values` of this process, recomputed only when the environment or argv changed
    (one C-level dict comparison per call, not a re-scan)."""
    global _cache
    env = getattr(os.environ, "_data", None)
    env = dict(os.environ) if not isinstance(env, dict) else env
    cached_env, cached_argv, values = _cache
    if env != cached_env or sys.argv != cached_argv:
        values = secret_values()
        _cache = (dict(env), list(sys.argv), values)
    return values


def safe_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed environment variables only; never the whole environment."""
    return {k: redact_text(v) for k, v in sorted(environ.items()) if _ENV_ALLOW.match(k) and not _hides(k, v)}
