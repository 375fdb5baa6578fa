"""The ``zktwist`` command: operator tools next to the twistd plugin."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, List, NoReturn, Optional

from zktwist import ZOOKEEPER_COMPAT_VERSION, __version__


def _cmd_version(args: argparse.Namespace) -> int:
    print("zktwist %s (Apache ZooKeeper %s protocol)" % (__version__, ZOOKEEPER_COMPAT_VERSION))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from zktwist.cli.bench import run_bench
    return run_bench(args)


def _cmd_sim(args: argparse.Namespace) -> int:
    from zktwist.cli.sim import run
    return run(args)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (and exit status 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def _help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2
    return func


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zktwist", description="zktwist operator tools "
                                "(the server itself runs with: twistd -n zktwist --config FILE)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    v = sub.add_parser("version", help="print the version")
    v.set_defaults(func=_cmd_version)
    lg = sub.add_parser("log", help="transaction log tools")
    lsub = lg.add_subparsers(dest="log_command", metavar="COMMAND")
    lg.set_defaults(func=_help_of(lg))
    from zktwist.cli.storage import add_parsers
    add_parsers(sub, lsub)
    from zktwist.cli.bench import add_arguments
    b = sub.add_parser("bench", help="pipelined load generator for any ZooKeeper server")
    add_arguments(b)
    b.set_defaults(func=_cmd_bench)
    from zktwist.cli import sim
    s = sub.add_parser("sim", help="deterministic whole-ensemble simulator (replication checks)")
    sim.add_arguments(s)
    s.set_defaults(func=_cmd_sim)
    from zktwist.cli.tls import add_parsers as add_tls_parsers
    add_tls_parsers(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
