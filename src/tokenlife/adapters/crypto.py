"""Encryption of token values at rest (MultiFernet: the first key encrypts, all decrypt)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tokenlife.errors import ConfigurationError, DecryptionError


class Cipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise DecryptionError(
                "no configured encryption key decrypts this value; was a key removed "
                "from TOKENLIFE_ENCRYPTION_KEYS before stored tokens were re-encrypted?"
            ) from None
