"""How deep property tests go: a test that needs its own number of examples states it for the
default profile and scales it by the active profile, so ``pytest --slow`` deepens it too."""

from __future__ import annotations

from hypothesis import settings

DEFAULT_EXAMPLES = 30  # the "default" profile's max_examples (tests/conftest.py)
SLOW_EXAMPLES = 1000  # the "slow" profile's


def examples(count: int, profile: settings | None = None) -> int:
    """``count`` examples under the default profile, scaled by ``profile`` (the active one)."""
    active = (profile or settings()).max_examples
    return max(count, count * active // DEFAULT_EXAMPLES)
