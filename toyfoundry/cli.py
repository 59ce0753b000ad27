"""The command line: a table of subcommands and one error handler; no foundry logic lives here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from toyfoundry import __version__
from toyfoundry.errors import FoundryError, UsageError, os_error_line
from toyfoundry.pipes import end_quietly_on_closed_pipe
from toyfoundry.store.layout import Layout


class Command(Protocol):
    """A subcommand module: `add_arguments(parser)` and `run(args, layout) -> exit code`."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, layout: Layout) -> int: ...


#: name -> (module under toyfoundry.commands, one-line help); modules load only when run.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "check exchange files against the schemas and the foundry's rules"),
    "schemas": ("schemas", "check or regenerate the committed JSON Schemas"),
    "build": ("build", "run the doit graph (same as `doit` in the project folder)"),
    "mint": ("mint", "mint one order's batch (the plan's forge_mint_alfa)"),
    "ritual": ("ritual", "run one ritual (drill, parade, purge, promote) on an order"),
    "checkpoint": ("checkpoint", "approve a phase: the human checkpoint before expansion"),
    "review": ("review", "list quarantined Alfas and record review decisions"),
    "doctrine": ("doctrine", "inspect and verify the doctrine archive"),
    "loom": ("loom", "stitch telemetry into the quilt rollup (and exports with --export)"),
    "lint-telemetry": ("lint_telemetry", "check every ledger line against its schema"),
    "nightly": ("nightly", "lint, loom with exports, and the dashboard"),
    "why": ("why", "trace an Alfa or order to its files, ledger lines and exports"),
    "watch": ("watch", "watch exchange/ and rebuild what a change affects"),
    "watch-exchange": ("watch_exchange", "record exchange artefacts addressed to a target"),
    "watch-orders": ("watch_orders", "notify when the set of pending orders changes"),
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3
#: Commands that write nothing, so the foundry's folders being links does not concern them
#: (`build` is checked by the dependency DB it opens, like every doit command).
READ_ONLY = frozenset({"validate", "schemas", "why", "build"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _load(name: str) -> Command:
    module = importlib.import_module(f"toyfoundry.commands.{COMMANDS[name][0]}")
    return module  # type: ignore[return-value,unused-ignore]


def build_parser(selected: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser; `prog` names the selected subcommand in its usage and errors (a plan
    command such as `forge_mint_alfa` runs `toyfoundry mint` under its own name)."""
    parser = _Parser(
        prog="toyfoundry",
        description="Toyfoundry: orders in exchange/ become minted, drilled and promoted Alfas.",
    )
    version = f"{prog} (toyfoundry {__version__})" if prog else f"toyfoundry {__version__}"
    parser.add_argument("--version", action="version", version=version)
    parser.add_argument(
        "--root",
        help="project folder holding exchange/ and .toyfoundry/ (default: $TOYFOUNDRY_ROOT, else"
        " the working folder or the nearest one above it that holds exchange/)",
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        if name != selected:
            subs.add_parser(name, help=COMMANDS[name][1], add_help=False)
            continue
        command = _load(name)
        sub = subs.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])
        if prog:
            sub.prog = prog
        command.add_arguments(sub)
    return parser


def _selected(argv: Sequence[str]) -> str | None:
    """The subcommand named on the line, so only its module's arguments are built."""
    at = _command_at(argv)
    return None if at is None or argv[at] not in COMMANDS else argv[at]


def _command_at(argv: Sequence[str]) -> int | None:
    """Where the subcommand's name is on the line (the first word not an option's value)."""
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--root":
            skip = True
        elif not arg.startswith("-"):
            return i
    return None


def _build_argv(rest: Sequence[str]) -> tuple[list[str], list[str]]:
    """`toyfoundry build`'s own arguments (`--lock-timeout`, a leading `-h`), and doit's."""
    own: list[str] = []
    doit: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--lock-timeout" and i + 1 < len(rest):
            own += rest[i : i + 2]
            i += 1
        elif arg.startswith("--lock-timeout=") or (arg in ("-h", "--help") and i == 0):
            own.append(arg)
        else:
            doit.append(arg)
        i += 1
    return own, doit


def _log_crash(root: str | None) -> Path | None:
    try:
        folder = Layout.discover(root).logs_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "crash.log"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(traceback.format_exc() + "\n")
        return path
    except OSError:
        return None


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse, dispatch, and map every outcome to an exit code: 0 ok, 1 failed, 2 usage, 3 crash."""
    if argv is None:  # the console script is the process (tests pass their argv)
        end_quietly_on_closed_pipe()
    argv = list(sys.argv[1:] if argv is None else argv)
    root: str | None = None  # the project given by --root: its .toyfoundry/ gets the crash log
    try:
        selected = _selected(argv)
        parser = build_parser(selected, prog)
        passthru: list[str] | None = None
        if selected == "build":
            # doit's own options (`-n 0`, `-v 2`) go to doit as they are: argparse would
            # take them for options of ours
            at = _command_at(argv) or 0
            own, passthru = _build_argv(argv[at + 1 :])
            argv = [*argv[: at + 1], *own]
        args = parser.parse_args(argv)
        if passthru is not None:
            args.doit_args = passthru
        root = args.root
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        layout = Layout.discover(args.root)
        if args.command not in READ_ONLY and layout.linked_folders():
            from toyfoundry.exchange.loader import linked_folder_problems

            problems = linked_folder_problems(layout)
            if problems:
                raise FoundryError("", problems)
        return _load(args.command).run(args, layout)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except FoundryError as exc:
        print(f"{exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        print(os_error_line(exc), file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        log = _log_crash(root)
        where = f" (details in {log})" if log else ""
        print(f"toyfoundry: unexpected error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        return EXIT_CRASH
