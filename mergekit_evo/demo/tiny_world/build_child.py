"""The child process a tiny-world build runs in, its numerics pinned by the environment the parent gives it when
the spec asks (numerics.py).

    python -m mergekit_evo.demo.tiny_world.build_child STAGING FINAL SPEC_JSON

Its log lines go to standard output for the parent to pass on; progress bars to standard error.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    import transformers

    from mergekit_evo.demo.tiny_world.build import WorldSpec, build_into

    transformers.utils.logging.set_verbosity_error()  # the build prints its own progress
    transformers.utils.logging.disable_progress_bar()

    staging, final, spec = argv
    build_into(
        Path(staging), Path(final), WorldSpec.model_validate_json(spec), log=lambda line: print(line, flush=True)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
