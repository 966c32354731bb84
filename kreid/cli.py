"""What every binary in bin/ shares: absl's ``app.run`` with errors a user can act on.

A bad input is reported as one line naming the file, flag or field (exit
status 2), not a traceback: kreid's own errors (:mod:`kreid.errors`), the
edge runtime's (sidecar, image, gallery) and a missing file. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import sys


def user_errors() -> tuple[type, ...]:
    from kreid.errors import KreidError
    from kreid_edge.images import ImageFileError
    from kreid_edge.matcher import GalleryError
    from kreid_edge.sidecar import SidecarError

    return KreidError, SidecarError, ImageFileError, GalleryError, FileNotFoundError


def parse_flags(argv, config_flag: str = "config"):
    """absl ``flags_parser``: an unknown ``--config.key`` fails with one line naming it and
    the valid keys (exit status 2), not a traceback from deep inside ml_collections."""
    from absl import flags

    from kreid.training.config import load_config_file, unknown_override

    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError, flags.Error) as exc:
        paths = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{config_flag}=")]
        message = None
        if paths:
            try:
                message = unknown_override(load_config_file(paths[-1]), argv, config_flag)
            except Exception:  # noqa: BLE001  (the config file itself is broken: absl's error)
                message = None
        sys.stderr.write(f"error: {message or exc}\n")
        sys.exit(2)


def run(main, config_flag: str | None = None) -> None:
    """``app.run(main)``; kreid's user errors end the program with one line and status 2."""
    from absl import app

    def guarded(argv):
        try:
            return main(argv)
        except user_errors() as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(2)

    if config_flag:
        app.run(guarded, flags_parser=lambda argv: parse_flags(argv, config_flag))
    else:
        app.run(guarded)
