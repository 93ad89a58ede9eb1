"""Approval reply tokens and sender authentication for the email channel.

- A token is `<approval id>.<mac>`, the mac an HMAC-SHA256 over the approval id and the
  approver's identity, keyed with EMAIL_TOKEN_SECRET. It travels in a plus-address Reply-To
  (`bot+appr-<token>@domain`) and in the subject (`[Approval <token>]`), so a reply carries it
  back whichever one the approver's client keeps.
- `authentication_failure` reads only the topmost Authentication-Results header whose
  authserv-id is the one we trust (our own MX); anything a sender injected sits below it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

import authres  # untyped; used only in `_parse_results`

MAC_CHARS = 20  # 80 bits of the HMAC, lowercase hex (survives MTAs that lowercase local parts)
PLUS_TAG = "appr-"
_TOKEN = rf"([0-9a-z]{{4,40}})\.([0-9a-f]{{{MAC_CHARS}}})"
SUBJECT_TOKEN = re.compile(rf"\[Approval {_TOKEN}\]", re.IGNORECASE)
AUTHSERV_ID = re.compile(r"^\s*(?:\([^)]*\)\s*)*([^\s;(]+)")


@dataclass(frozen=True)
class Token:
    approval_id: str
    mac: str

    def __str__(self) -> str:
        return f"{self.approval_id}.{self.mac}"


class Tokens:
    """Signs and finds approval reply tokens for one bot address."""

    def __init__(self, secret: bytes, address: str) -> None:
        self._secret = secret
        self.local, _, self.domain = address.lower().partition("@")
        self._plus = re.compile(rf"^{re.escape(self.local)}\+{PLUS_TAG}{_TOKEN}@{re.escape(self.domain)}$")

    def sign(self, approval_id: str, approver: str) -> Token:
        digest = hmac.new(self._secret, f"{approval_id}\x00{approver}".encode(), hashlib.sha256).hexdigest()
        return Token(approval_id, digest[:MAC_CHARS])

    def verify(self, token: Token, approver: str) -> bool:
        return hmac.compare_digest(self.sign(token.approval_id, approver).mac, token.mac.lower())

    def reply_address(self, token: Token) -> str:
        return f"{self.local}+{PLUS_TAG}{token}@{self.domain}"

    @staticmethod
    def subject_tag(token: Token) -> str:
        return f"[Approval {token}]"

    def is_ours(self, address: str) -> bool:
        """The bot's address or one of its plus addresses (mail from there is a loop)."""
        local, _, domain = address.lower().partition("@")
        return domain == self.domain and (local == self.local or local.startswith(f"{self.local}+"))

    def find(self, addresses: Iterable[str], subject: str) -> list[Token]:
        """Tokens in the recipient plus-addresses first, then in the subject; without repeats."""
        found: list[Token] = []
        matches = [self._plus.match(address.lower()) for address in addresses]
        matches += list(SUBJECT_TOKEN.finditer(subject))
        for match in matches:
            if match is not None:
                token = Token(match.group(1).lower(), match.group(2).lower())
                if token not in found:
                    found.append(token)
        return found


def _aligned(from_domain: str, domain: str) -> bool:
    """Relaxed alignment: the From domain is the authenticated domain or one of its subdomains."""
    return from_domain == domain or from_domain.endswith(f".{domain}")


def _parse_results(value: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, result, {"header.d": ...}) for each result in one header value."""
    header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {value}")
    return [
        (
            str(r.method).lower(),
            str(r.result).lower(),
            {f"{p.type}.{p.name}".lower(): str(p.value) for p in r.properties},
        )
        for r in header.results
    ]


def authentication_failure(headers: list[str], trusted_authserv_id: str, from_domain: str) -> str | None:
    """Why the mail does not pass DMARC (or aligned DKIM) per our MX, or None when it does.

    `headers` are the Authentication-Results values in the message's order (topmost first).
    """
    for value in headers:
        found = AUTHSERV_ID.match(value)
        if found is None or found.group(1).lower() != trusted_authserv_id.lower():
            continue
        try:
            results = _parse_results(" ".join(value.split()))
        except authres.AuthResError:
            return f"the Authentication-Results header from {trusted_authserv_id} could not be read"
        for method, result, props in results:
            if method == "dmarc" and result == "pass" and _aligned(from_domain, props.get("header.from", from_domain)):
                return None
            if method == "dkim" and result == "pass" and _aligned(from_domain, props.get("header.d", "").lower()):
                return None
        return f"{trusted_authserv_id} reports no DMARC pass or aligned DKIM signature for {from_domain}"
    return f"no Authentication-Results header from {trusted_authserv_id}"
