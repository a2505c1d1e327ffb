from mergekit_evo.testing import tiny_world  # noqa: F401  (the session fixture, shared with mergekit-evo's tests)
