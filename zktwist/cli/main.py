"""The ``zktwist`` command: operator tools next to the twistd plugin."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from zktwist import ZOOKEEPER_COMPAT_VERSION, __version__


def _cmd_version(args: argparse.Namespace) -> int:
    print("zktwist %s (Apache ZooKeeper %s protocol)" % (__version__, ZOOKEEPER_COMPAT_VERSION))
    return 0


def _cmd_log_dump(args: argparse.Namespace) -> int:
    from zktwist.core.txn import decode
    from zktwist.proto.consts import NAMES
    from zktwist.storage.errors import StorageError
    from zktwist.storage.filelog import FileLogBackend

    log_dir = args.dir
    if os.path.basename(os.path.normpath(log_dir)) == "version-2":
        log_dir = os.path.dirname(os.path.normpath(log_dir))
    backend = FileLogBackend(log_dir, log_dir)
    if not os.path.isdir(backend.version_dir):
        print("zktwist: error: %s has no version-2 directory" % args.dir, file=sys.stderr)
        return 1
    try:
        for zxid, payload in backend.read_txns(0):
            txn = decode(payload)
            print("zxid=0x%x session=0x%x cxid=%d time=%d type=%s %r" % (
                zxid, txn.session_id & 0xFFFFFFFFFFFFFFFF, txn.cxid, txn.time,
                NAMES.get(txn.type, txn.type), txn.body))
    except StorageError as e:
        print("zktwist: error: %s" % e, file=sys.stderr)
        return 1
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from zktwist.cli.bench import run_bench
    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zktwist", description="zktwist operator tools "
                                "(the server itself runs with: twistd -n zktwist --config FILE)")
    sub = p.add_subparsers(dest="command")
    v = sub.add_parser("version", help="print the version")
    v.set_defaults(func=_cmd_version)
    lg = sub.add_parser("log", help="transaction log tools")
    lsub = lg.add_subparsers(dest="log_command")
    dump = lsub.add_parser("dump", help="print every txn of a data log directory, one per line")
    dump.add_argument("dir", help="dataLogDir (or its version-2 subdirectory)")
    dump.set_defaults(func=_cmd_log_dump)
    from zktwist.cli.bench import add_arguments
    b = sub.add_parser("bench", help="pipelined load generator for any ZooKeeper server")
    add_arguments(b)
    b.set_defaults(func=_cmd_bench)
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
