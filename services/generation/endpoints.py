"""Which LLM endpoint a request may use, and which key goes there.

A request names an OpenAI-compatible base URL; the service holds an API key of its own. The
service's key must never reach a URL the caller picked (a listener there would simply read it),
so the operator lists the endpoints it may go to (``llm_base_urls``). A
request that names another endpoint brings its own key (``llm.api_key``) or sends none; with
``llm_other_endpoints`` off, such a request is refused.

URLs are compared by their parts (scheme, host, port, path without a trailing slash), so
``https://API.openai.com/v1/`` is the allowed ``https://api.openai.com/v1`` while
``https://api.openai.com.evil.example/v1`` or ``https://api.openai.com/v1@evil.example`` are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from talklike.common.errors import InvalidArgument, PermissionDenied, quote


@dataclass(frozen=True)
class Endpoint:
    """Where to send LLM requests and with which key (``repr`` leaves the key out)."""

    base_url: str
    api_key: str = field(repr=False)
    #: True when the URL is one of the operator's allowed endpoints (it gets the service's key).
    allowed: bool


def url_parts(url: str, field_name: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of an http(s) URL; InvalidArgument naming ``field_name`` otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise InvalidArgument(field_name, f"{quote(url)} is not a URL ({error})") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(field_name, f"{quote(url)} is not an http(s) URL")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise InvalidArgument(
            field_name, f"{quote(url)} must be a plain base URL, without user info, query or fragment"
        )
    return parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/")


def allowed_urls(setting: str) -> list[str]:
    """The comma-separated ``llm_base_urls`` setting as a list, in order."""
    return [url.strip() for url in setting.split(",") if url.strip()]


def choose_endpoint(
    requested: str,
    caller_key: str,
    allowed: Sequence[str],
    service_key: str,
    *,
    others_allowed: bool,
    field_name: str = "llm.base_url",
) -> Endpoint:
    """The endpoint for a request: an allowed one gets the service's key, any other only the caller's."""
    url = requested.strip()
    if not url:
        offered = f" (this service's: {', '.join(allowed)})" if allowed else ""
        raise InvalidArgument(field_name, f"LLM mode needs the base URL of an OpenAI-compatible API{offered}")
    parts = url_parts(url, field_name)
    if any(parts == url_parts(known, "llm_base_urls") for known in allowed):
        return Endpoint(base_url=url, api_key=service_key, allowed=True)
    if not others_allowed:
        raise PermissionDenied(
            f"{field_name}: {quote(url)} is not one of the endpoints this service may call "
            f"({', '.join(allowed) or 'none'}); ask its operator to add it to TALKLIKE_GENERATION_LLM_BASE_URLS"
        )
    return Endpoint(base_url=url, api_key=caller_key.strip(), allowed=False)
