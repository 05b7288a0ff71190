"""The effective settings as a log event may show them: every value, never a secret."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = ["settings_view"]

#: Words that mark a setting holding a credential itself (a ``*_file`` or
#: ``*_credential`` setting names where one is kept, and is shown).
_SECRET_WORDS = ("password", "secret", "token", "passphrase")


def _shown(name: str, value: Any) -> bool:
    if isinstance(value, SecretStr | SecretBytes):
        return False
    if name.endswith(("_file", "_credential", "_credentials")):
        return True
    return not any(word in name for word in _SECRET_WORDS)


def settings_view(settings: BaseModel) -> dict[str, Any]:
    """Each setting's value as JSON can hold it (paths as strings); credentials left out."""
    values = settings.model_dump(mode="json")
    raw = dict(settings)
    return {name: values[name] for name in sorted(values) if _shown(name, raw.get(name))}
