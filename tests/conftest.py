"""Settings for every test.

Hypothesis draws its examples from a seed derived from each test function
(derandomize), and keeps no example database between runs: a property test
tries the same inputs on every machine and every run, so a failure in CI
reproduces locally. To explore new inputs on purpose, run with
HYPOTHESIS_PROFILE=explore (random seeds; a failure prints the seed to pass
to `pytest --hypothesis-seed=...`).
"""

from __future__ import annotations

import os

from hypothesis import settings

# No deadline: on a loaded CI machine a slow example is not a wrong one.
settings.register_profile(
    "reproducible", derandomize=True, database=None, print_blob=True, deadline=None
)
settings.register_profile(
    "explore", derandomize=False, database=None, print_blob=True, deadline=None
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
