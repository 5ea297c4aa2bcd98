"""`blockbench` command line: the top-level parser over the subcommands (one module each in commands/, listed by
command_modules in the order `blockbench --help` shows them) and the exit codes."""

from __future__ import annotations

import argparse
import signal
import sys
from types import ModuleType
from typing import Any, NoReturn

from blockbench.blocks.plugins import register_user_blocks
from blockbench.errors import BlockbenchError, Terminated
from blockbench.untrusted import plain


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: the message and where to look.
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def command_modules() -> tuple[ModuleType, ...]:
    """The subcommands' modules, in the order `blockbench --help` lists them."""
    # deferred: the commands import the views (matplotlib, pandas, scipy); importing cli stays light
    from blockbench.commands import (
        compare,
        diagnose,
        ladder,
        leaderboard,
        listing,
        profiling,
        report,
        run,
        show,
        sweep,
    )

    return (listing, show, run, sweep, leaderboard, ladder, compare, report, diagnose, profiling)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="blockbench", description="Benchmark transformer block designs under identical training.")
    parser.add_argument("--block", action="append", metavar="[NAME=]module.path:factory",
                        help="register a user block (a BlockSpec or a factory(config, layer_index)); repeatable "
                             "(default: none, the presets only)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in command_modules():
        command.add_parser(sub)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Exit codes (a contract, see docs/reliability.md): 0 ok, 1 regression (compare and the gate), 2 unusable
    input or usage error, 3 some runs failed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (an embedding program): it keeps its own handler
        previous = None
    try:
        register_user_blocks(args.block)
        return args.func(args)
    except BlockbenchError as exc:
        if args.debug:
            raise
        # One printable line: a message may quote a file's or a record's text (untrusted.plain drops ESC & co).
        print(f"blockbench: error: {plain(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("blockbench: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("blockbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback (and never exit 1, "regression") by default
        if args.debug:
            raise
        first = plain((str(exc).strip().splitlines() or [""])[0])
        print(f"blockbench: error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
