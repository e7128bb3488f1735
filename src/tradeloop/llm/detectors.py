"""Offline detectors behind the guardrails: safe user regexes, PII (with checksums) and the
prompt-injection heuristics. Each returns spans, never the matched text itself, so that a
finding stored on an execution row does not copy the PII it found."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import regex

MAX_PATTERN_LENGTH = 1000
# A user's pattern gets this long per text; catastrophic backtracking ends here, not in a hang.
REGEX_TIMEOUT_S = 0.1
FLAG_NAMES = {"ignorecase": regex.IGNORECASE, "multiline": regex.MULTILINE,
              "dotall": regex.DOTALL}


@dataclass(frozen=True)
class Hit:
    """A finding: what kind, and where (start, end) when it is a span of the text."""

    kind: str
    start: int
    end: int


class PatternError(ValueError):
    """A user pattern that is too long or does not compile."""


class RegexTimeoutError(Exception):
    """A user pattern ran past REGEX_TIMEOUT_S on a text."""


def compile_user_pattern(pattern: str, flags: Iterable[str] = ()) -> regex.Pattern[str]:
    """A compiled user regex; PatternError says why it is refused."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    unknown = sorted(set(flags) - set(FLAG_NAMES))
    if unknown:
        raise PatternError(f"unknown flags {unknown}; allowed: {sorted(FLAG_NAMES)}")
    return _compile(pattern, tuple(sorted(set(flags))))


@lru_cache(maxsize=256)
def _compile(pattern: str, flags: tuple[str, ...]) -> regex.Pattern[str]:
    combined = 0
    for name in flags:
        combined |= FLAG_NAMES[name]
    try:
        return regex.compile(pattern, combined)
    except regex.error as exc:
        raise PatternError(f"invalid regular expression: {exc}") from exc


def find_pattern(compiled: regex.Pattern[str], text: str, kind: str) -> list[Hit]:
    """Every match of a user pattern; RegexTimeoutError when it runs too long."""
    try:
        return [Hit(kind, m.start(), m.end())
                for m in compiled.finditer(text, timeout=REGEX_TIMEOUT_S)]
    except TimeoutError as exc:
        raise RegexTimeoutError(f"pattern took longer than {REGEX_TIMEOUT_S} s") from exc


def find_keywords(keywords: Iterable[str], text: str, *, case_sensitive: bool) -> list[Hit]:
    """Whole-word (or whole-phrase) occurrences of each keyword."""
    hits: list[Hit] = []
    flags = 0 if case_sensitive else regex.IGNORECASE
    for keyword in keywords:
        pattern = regex.compile(r"(?<!\w)" + regex.escape(keyword) + r"(?!\w)", flags)
        hits.extend(Hit(f"keyword:{keyword}", m.start(), m.end()) for m in pattern.finditer(text))
    return hits


# ---------------------------------------------------------------- PII and secrets

EMAIL = regex.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                      r"\.[A-Za-z]{2,}(?!\w)")
# International numbers (+CC then groups) and North American ones ((415) 555-0100); bare digit
# runs are left alone so prices, volumes, dates and account numbers are not flagged as phones.
PHONE = regex.compile(r"(?<![\w+])(?:\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,4}){2,4}"
                      r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?![\w.]?\d)")
CARD = regex.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
IBAN = regex.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
SECRETS = {
    "openai_key": regex.compile(r"\bsk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}"),
    "aws_access_key": regex.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": regex.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    "slack_token": regex.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "google_api_key": regex.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    "private_key": regex.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
}
PII_TYPES = ("email", "phone", "card", "iban", "secret")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def find_pii(text: str, types: Iterable[str] = PII_TYPES) -> list[Hit]:
    """Emails, phone numbers, Luhn-valid card numbers, mod-97-valid IBANs and API secrets."""
    wanted = set(types)
    hits: list[Hit] = []
    if "secret" in wanted:
        for kind, pattern in SECRETS.items():
            hits.extend(Hit(f"secret:{kind}", m.start(), m.end()) for m in pattern.finditer(text))
    if "email" in wanted:
        hits.extend(Hit("email", m.start(), m.end()) for m in EMAIL.finditer(text))
    if "iban" in wanted:
        hits.extend(Hit("iban", m.start(), m.end()) for m in IBAN.finditer(text)
                    if iban_valid(m.group()))
    if "card" in wanted:
        hits.extend(Hit("card", m.start(), m.end()) for m in CARD.finditer(text)
                    if luhn_valid(_digits(m.group())))
    if "phone" in wanted:
        hits.extend(Hit("phone", m.start(), m.end()) for m in PHONE.finditer(text)
                    if _looks_like_phone(m.group()) and not _overlaps(m, hits))
    return hits


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _looks_like_phone(candidate: str) -> bool:
    # E.164 numbers have at most 15 digits; fewer than 9 are extensions or short codes.
    return 9 <= len(_digits(candidate)) <= 15


def _overlaps(match: regex.Match[str], hits: list[Hit]) -> bool:
    return any(hit.start < match.end() and match.start() < hit.end for hit in hits)


# ---------------------------------------------------------------- prompt injection

_FILLER = r"(?:\W+\w+){0,4}?\W+"  # up to four words between the parts of a phrase
INJECTION_RULES: dict[str, regex.Pattern[str]] = {
    # "Ignore all previous instructions", "disregard the rules above"
    "ignore_instructions": regex.compile(
        r"\b(?:ignore|disregard|forget|override|bypass|skip)" + _FILLER
        + r"(?:instructions?|prompts?|rules|directions|guidelines|context)\b", regex.IGNORECASE),
    # "Print your system prompt", "reveal the hidden instructions"
    "reveal_system_prompt": regex.compile(
        r"\b(?:reveal|show|print|repeat|output|leak|tell me|what (?:is|are))" + _FILLER
        + r"(?:system prompt|system message|(?:hidden|initial|original|secret) "
        r"(?:prompt|instructions)|your instructions)\b", regex.IGNORECASE),
    # "You are now DAN", "from now on you will", "pretend you are"
    "role_override": regex.compile(
        r"\b(?:you are now|from now on,? you|pretend (?:to be|you are)|act as (?:an? )?"
        r"(?:unrestricted|unfiltered|uncensored|jailbroken))\b", regex.IGNORECASE),
    # Well-known jailbreak names
    "jailbreak_terms": regex.compile(
        r"\b(?:DAN mode|do anything now|developer mode|jailbreak(?:ed)?|god mode)\b",
        regex.IGNORECASE),
    # Chat-template tokens and fake role headers that try to start a new system turn
    "fake_delimiters": regex.compile(
        r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>"
        r"|(?m:^\s*#{0,3}\s*(?:system|assistant)\s*:)", regex.IGNORECASE),
    # A long base64 run: instructions smuggled past keyword filters
    "encoded_payload": regex.compile(r"[A-Za-z0-9+/]{160,}={0,2}"),
}


def find_injection(text: str, rules: Iterable[str] = tuple(INJECTION_RULES)) -> list[Hit]:
    """Spans matching the named prompt-injection heuristics."""
    return [Hit(f"injection:{name}", m.start(), m.end()) for name in rules
            for m in INJECTION_RULES[name].finditer(text)]


def redact(text: str, hits: Iterable[Hit]) -> str:
    """`text` with every hit's span replaced by `[REDACTED:<kind>]`; overlaps merge."""
    spans = sorted((hit.start, hit.end, hit.kind) for hit in hits if hit.end > hit.start)
    pieces: list[str] = []
    cursor = 0
    for start, end, kind in spans:
        if start < cursor:  # overlapping hit: extend the redaction already made
            cursor = max(cursor, end)
            continue
        pieces.extend((text[cursor:start], f"[REDACTED:{kind.split(':')[0].upper()}]"))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
