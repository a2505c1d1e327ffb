from mergekit_evo.testing import micro_world, offline, tiny_world  # noqa: F401  (the session fixture, shared with mergekit-evo's tests)

offline()  # before anything imports the Hugging Face libraries: tests never download
