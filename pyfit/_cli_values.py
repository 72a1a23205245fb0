"""What the ``pyfit`` command's words mean, shared by the parser (cli.py) and the commands
(_commands.py): exit statuses and the parsing of option values."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def parse_value(text: str) -> Any:
    """A ``--model-arg`` value: JSON where it parses (3, 0.5, true, [8, 8]), else the string itself.

    >>> [parse_value(v) for v in ("3", "0.5", "true", "[8,8]", "tanh", "True")]
    [3, 0.5, True, [8, 8], 'tanh', True]
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_values(pairs: Optional[List[str]], flag: str, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            parser.error(f"{flag} takes KEY=VALUE, got {pair!r}")
        result[key.strip().replace("-", "_")] = parse_value(value)
    return result


def learning_rate(text: str) -> Any:
    """A ``--lr`` value: a number, or ``auto``.

    >>> learning_rate("0.1"), learning_rate("auto")
    (0.1, 'auto')
    """
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
