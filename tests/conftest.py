import os

# a stray hub or analytics call must fail fast instead of hanging on a machine without network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


# ---- no deprecated calls of our own -------------------------------------------------------
# A FutureWarning or DeprecationWarning raised because *our* code (src/, bench/, scripts/,
# tests/) called a deprecated API fails the test that triggered it, with the call site, so
# the next rename (transformers 5.24's `past_key_values` -> `cache`, say) is caught the day it
# appears. Warnings raised at a library's import, or by libraries among themselves, are not ours.
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
_OURS = tuple(str(_ROOT / d) + "/" for d in ("src", "bench", "scripts", "tests"))


def _our_call_site(skip: int):
    """The first frame of ours outside the warning machinery and libraries, or None when the
    warning was raised while importing a module or before any frame of ours."""
    frame = sys._getframe(skip)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib"):
            return None
        if name.startswith(_OURS) and not name.endswith("conftest.py"):
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@pytest.fixture(autouse=True)
def no_deprecated_calls_of_ours(monkeypatch):
    found = []
    original = warnings.warn

    def warn(message, category=None, stacklevel=1, source=None, **kwargs):
        cat = category or (type(message) if isinstance(message, Warning) else UserWarning)
        if issubclass(cat, (DeprecationWarning, FutureWarning)):
            site = _our_call_site(2)
            if site:
                found.append(f"{cat.__name__} at {site}: {message}")
        return original(message, category, stacklevel + 1, source, **kwargs)

    monkeypatch.setattr(warnings, "warn", warn)
    yield
    assert not found, "deprecated calls of ours:\n" + "\n".join(found)
