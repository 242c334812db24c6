"""Password hashing with Argon2id (RFC 9106), via argon2-cffi's defaults."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from salud.errors import DomainError

_hasher = PasswordHasher()
# Compared against when the account does not exist, so that a wrong username costs the same
# time as a wrong password (no account enumeration by timing).
_DUMMY = _hasher.hash("cuenta-inexistente")

MIN_LENGTH = 12
# Argon2 takes about 0.1 s of CPU and 64 MiB per hash: it runs on these threads, never on the
# event loop (every other request would wait behind a sign-in), and two at a time at most
# (a burst of guesses queues here instead of taking the memory and CPU of the server).
_ARGON2_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


def check_strength(password: str) -> str | None:
    """A reason the password is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"debe tener al menos {MIN_LENGTH} caracteres"
    if password.isdigit() or password.isalpha():
        return "combine letras con números o símbolos"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


# Hashes waiting or running at once, at most: beyond, a sign-in is told to retry (503) rather
# than queued behind a flood of guesses from many addresses (each address is limited apart).
MAX_PENDING = 64
_pending = 0


class SignInBusy(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "el inicio de sesión está ocupado: intente de nuevo en unos segundos", [], 503,
            "Servicio ocupado", "busy",
        )  # fmt: skip
        self.wait = 5  # Retry-After


async def verify_password_off_loop(stored: str | None, password: str) -> bool:
    """`verify_password` on the Argon2 threads: the event loop serves other requests. More
    than MAX_PENDING at once: SignInBusy (nothing verified, nothing counted against the
    account)."""
    global _pending
    if _pending >= MAX_PENDING:
        raise SignInBusy()
    _pending += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_ARGON2_THREADS, verify_password, stored, password)
    finally:
        _pending -= 1
