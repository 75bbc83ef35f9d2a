"""The whole ``geventipc`` argument parser, built from the command modules.

Each command module (serve, emit, request, listen, describe, stats) has ``NAME``, ``SUMMARY``,
``USAGE``, ``EPILOG``, ``add_arguments(parser)`` and ``run(args) -> int``; listing a
module in :data:`COMMANDS` is all it takes to add a command.
"""
from __future__ import annotations

import argparse
from types import ModuleType

from .. import __version__
from . import describe, emit, listen, request, serve, stats
from .options import EXIT, PROG, TARGETS, Parser, common_options

#: the commands, in the order ``geventipc --help`` lists them
COMMANDS: dict[str, ModuleType] = {
    module.NAME: module for module in (serve, emit, request, listen, describe, stats)
}


def build_parser() -> Parser:
    """The whole ``geventipc`` argument parser."""
    parser = Parser(
        prog=PROG,
        description="Poke at IPC services from the shell: serve, emit, request, listen, "
                    "describe, stats. Run 'geventipc COMMAND --help' for a command's options.",
        epilog=TARGETS + "\n" + EXIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=Parser)
    common = common_options()
    subs: dict[str, Parser] = {}
    for name, module in COMMANDS.items():
        summary: str = module.SUMMARY
        subs[name] = commands.add_parser(
            name, parents=[common],  # type: ignore[list-item]
            help=summary, description=summary[0].upper() + summary[1:] + ".",
            epilog=module.EPILOG + "\n" + EXIT, usage=module.USAGE,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(subs[name])
    parser.subcommands = subs
    return parser
