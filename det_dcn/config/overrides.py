"""Command lines of the form ``--flags ... KEY VALUE ...``: telling config overrides from everything else.

``parse_args_with_overrides(parser, argv)`` accepts flags before, between and after the ``KEY VALUE`` pairs (they
are collected into ``args.opts`` in the order given), and never takes a config key given after a list-valued flag
(``--input a.png MODEL.WEIGHTS w.pth``) for one of its values.
"""

import argparse
import re
import sys
from typing import List, Optional, Sequence, Tuple

_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")


def is_override_key(token: str) -> bool:
    """True for a config key as written on the command line: its first part is a top-level key of det_dcn's config
    (``MODEL.WEIGHTS``, ``SEED``). Unknown keys under a known section (``MODEL.WIEGHTS``) count too, so that the
    config reports the typo instead of it being taken for a file name; ``DSC_0001.JPG`` does not."""
    if not isinstance(token, str) or not _KEY.match(token):
        return False
    from .config import get_cfg

    return token.split(".")[0] in get_cfg()


def _option(parser: argparse.ArgumentParser, token: str) -> Optional[argparse.Action]:
    """The action of an option token (exact, or a unique prefix as argparse allows), else None."""
    name = token.split("=", 1)[0]
    actions = parser._option_string_actions  # argparse's own table of option strings
    if name in actions:
        return actions[name]
    matches = {a for s, a in actions.items() if s.startswith(name) and s.startswith("--")}
    return matches.pop() if len(matches) == 1 else None


def split_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(flags with their values for ``parser``, ``KEY VALUE`` overrides in the order given). A config key starts an
    override wherever it stands, except as the value of a single-valued option; list-valued options (``nargs`` "+"
    or "*") end at a config key. Words that are neither go with the overrides (``parser`` has no other positional)."""
    rest: List[str] = []
    overrides: List[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        action = _option(parser, token) if token.startswith("-") and len(token) > 1 else None
        if action is not None:
            rest.append(token)
            i += 1
            if "=" in token:
                continue
            if action.nargs in ("+", "*"):
                while i < len(argv) and not argv[i].startswith("-") and not is_override_key(argv[i]):
                    rest.append(argv[i])
                    i += 1
            else:
                n = 1 if action.nargs in (None, "?") else action.nargs if isinstance(action.nargs, int) else 0
                rest.extend(argv[i:i + n])
                i += n
        elif is_override_key(token):
            overrides.extend(argv[i:i + 2])
            i += 2
        else:  # a stray word: kept in place among the overrides, where the config reports it
            overrides.append(token)
            i += 1
    return rest, overrides


def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None,
                              opts_dest: str = "opts") -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) with ``KEY VALUE`` overrides anywhere (see :func:`split_overrides`)
    into ``args.<opts_dest>``; ``parser``'s only positional is ``opts_dest``, with ``nargs="*"``."""
    rest, overrides = split_overrides(parser, list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(rest)
    setattr(args, opts_dest, overrides)
    return args
