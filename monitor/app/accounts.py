"""Who may sign in to the check-in app: one account per wearer, its id is the wearer id.

The natural source is the broker's user table: every user but ``monitor`` is a wearer whose
broker account may only use ``anxmon/v1/{wearer}/...`` (``monitor/broker.py``), so a wearer
signs in to the app with the same name and password as their bridge or phone. The embedded
broker keeps that table in ``DATA/broker-credentials.json`` (``anxmon run``). A separate JSON
file ``{"users": {"alice": "password or scrypt hash"}}`` works too; ``hash_password`` makes the
hash (``scrypt$n$r$p$salt$hash``), so that file need not hold plain passwords.

How long a sign-in takes does not tell which names exist: an unknown name is checked against a
random dummy of the accounts' own kind, a plain password (a constant-time comparison) when they
hold plain passwords, else an scrypt hash with the parameters of theirs. (In a file mixing both kinds,
the hashed names answer more slowly than unknown ones: do not mix them.) Passwords are never logged.

Example
-------
>>> a = Accounts({"alice": "s3cret", "bob": hash_password("hunter2", n=2**10)})
>>> a.verify("alice", "s3cret"), a.verify("bob", "hunter2"), a.verify("bob", "s3cret"), a.verify("eve", "x")
(True, True, False, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Mapping

from monitor.errors import ConfigError
from monitor.wire import ID_PATTERN

SERVICE_USER = "monitor"  # the service's own broker user: not a wearer, never signs in


def hash_password(password: str, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``password`` (base64 parts; a fresh random salt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def _check_hash(stored: str, password: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=2**27)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class Accounts:
    """Wearer id -> password (plain or an scrypt hash).

    ``scrypt_n``: the cost of the dummy hash unknown names are checked against when the accounts
    are all hashes without one shared cost (else it is theirs).
    """

    def __init__(self, users: Mapping[str, str], scrypt_n: int = 2**14):
        self._users: dict[str, str] = {}
        for user, secret in users.items():
            if user == SERVICE_USER:
                continue
            if not ID_PATTERN.fullmatch(str(user)):
                raise ConfigError(f"account {user!r} is not a wearer id (1-64 characters of a-z, 0-9, _ or -)")
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"account {user!r} has no password")
            self._users[str(user)] = secret
        hashed = [s for s in self._users.values() if s.startswith("scrypt$")]
        if len(hashed) < len(self._users) or not hashed:  # plain passwords: a plain dummy
            self._dummy = secrets.token_urlsafe(24)
        else:  # the cost of theirs (the most common, when they differ)
            costs = [tuple(h.split("$")[1:4]) for h in hashed]
            n, r, p = max(set(costs), key=costs.count)
            try:
                self._dummy = hash_password(secrets.token_urlsafe(16), n=int(n), r=int(r), p=int(p))
            except (ValueError, MemoryError):  # a malformed hash: it never matches anyway
                self._dummy = hash_password(secrets.token_urlsafe(16), n=scrypt_n)

    @classmethod
    def from_file(cls, path: str | Path) -> "Accounts":
        """Read ``{"users": {...}}`` (the broker credentials file of ``anxmon run``, or your own)."""
        try:
            body = json.loads(Path(path).read_text())
            users = body["users"]
        except FileNotFoundError:
            raise ConfigError(f"accounts file {path} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not an accounts file ({{\"users\": {{\"alice\": \"...\"}}}}): {exc}") from None
        if not isinstance(users, dict):
            raise ConfigError(f"{path}: 'users' must be an object of wearer -> password")
        return cls(users)

    @property
    def wearers(self) -> list[str]:
        return sorted(self._users)

    def mark(self, wearer: str, key: str) -> str | None:
        """A digest of ``wearer``'s stored password keyed with ``key`` (a session's token, which
        the sessions file does not hold: the mark there tells nothing of the password), None for
        an unknown wearer. A session keeps the mark of its sign-in: a changed password ends it.

        >>> a = Accounts({"alice": "s3cret"})
        >>> a.mark("alice", "t") == a.mark("alice", "t") != Accounts({"alice": "new"}).mark("alice", "t")
        True
        """
        stored = self._users.get(wearer)
        return None if stored is None else hmac.new(key.encode(), stored.encode(), "sha256").hexdigest()

    def verify(self, wearer: str, password: str) -> bool:
        """True when ``password`` is ``wearer``'s; an unknown name costs what a known one does."""
        if not isinstance(password, str):
            return False
        stored = self._users.get(wearer) if isinstance(wearer, str) else None
        reference = stored if stored is not None else self._dummy
        if reference.startswith("scrypt$"):
            matches = _check_hash(reference, password)
        else:
            matches = hmac.compare_digest(reference.encode(), password.encode())
        return matches and stored is not None
