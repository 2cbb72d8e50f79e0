"""The ``gfpgan-debug`` command line: one verb per job, readable tables, ``--json`` for machines.

Exit codes: 0 success (or healthy), 1 a problem was found, 2 could not run (bad arguments or inputs; a one-line
message names the file and the problem, never a traceback).
Verbs defined in other modules register themselves through an ``add_cli(subparsers)`` function listed in
``VERB_MODULES``; each sets ``func`` to a function that takes the parsed arguments and returns an exit code.
"""
import argparse
import importlib
import json
import sys

from gfpgan_debug.errors import GfpganDebugError

VERB_MODULES = [
    "export",  # gfpgan-debug export
    "runtimes",  # gfpgan-debug run
    "train_demo",  # gfpgan-debug train-demo
    "doctor",  # gfpgan-debug doctor
]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GfpganDebugError as error:
        print(f"gfpgan-debug {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfpgan-debug",
                                     description="Debug GFPGAN exports: weights, runtimes, comparisons, the doctor.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_weights_cli(verbs)
    for name in VERB_MODULES:
        importlib.import_module(f"gfpgan_debug.{name}").add_cli(verbs)
    return parser


def print_table(rows, headers) -> None:
    """A plain aligned table for the terminal."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def emit_json(data, target) -> None:
    """Write ``data`` as JSON to a file, or to stdout when ``target`` is '-'."""
    text = json.dumps(data, indent=2, default=str)
    if target == "-":
        print(text)
    else:
        with open(target, "w") as f:
            f.write(text + "\n")


# ---------------------------------------------------------------------------------------------------------
# gfpgan-debug weights list | fetch | inspect | which
# ---------------------------------------------------------------------------------------------------------


def add_weights_cli(verbs) -> None:
    weights = verbs.add_parser("weights", help="official checkpoints: list, fetch, inspect; which weights are used")
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the official checkpoints, their URLs and SHA-256")
    listing.add_argument("--json", nargs="?", const="-", metavar="OUT", help="write JSON (to stdout if no file)")
    listing.set_defaults(func=weights_list)

    fetch = actions.add_parser("fetch", help="download an official checkpoint, verify its SHA-256, write atomically")
    fetch.add_argument("version", help="v1.2, v1.3 or v1.4")
    fetch.add_argument("--dest", help="folder to write into (default: data/weights)")
    fetch.add_argument("--url", help="a mirror URL to download from instead of the GitHub release")
    fetch.add_argument("--json", nargs="?", const="-", metavar="OUT")
    fetch.set_defaults(func=weights_fetch)

    inspect = actions.add_parser("inspect", help="read a checkpoint safely: inferred config and load report")
    inspect.add_argument("path")
    inspect.add_argument("--json", nargs="?", const="-", metavar="OUT")
    inspect.set_defaults(func=weights_inspect)

    which = actions.add_parser("which", help="which weights the workbook would use, and why")
    which.add_argument("--weights", help="an explicit checkpoint path")
    which.add_argument("--json", nargs="?", const="-", metavar="OUT")
    which.set_defaults(func=weights_which)


def weights_list(args) -> int:
    from gfpgan_debug.weights import OFFICIAL

    rows = [dict(version=w.version, filename=w.filename, url=w.url, sha256=w.sha256) for w in OFFICIAL.values()]
    if args.json:
        emit_json(rows, args.json)
    else:
        print_table([[r["version"], r["filename"], r["sha256"][:16] + "…", r["url"]] for r in rows],
                    ["version", "file", "sha256", "url"])
    return 0


def weights_fetch(args) -> int:
    from gfpgan_debug.weights import fetch_official, sha256_file

    path = fetch_official(args.version, dest_dir=args.dest, url=args.url, progress=not args.json)
    if args.json:
        emit_json({"path": str(path), "sha256": sha256_file(path)}, args.json)
    else:
        print(f"{path}: SHA-256 verified")
    return 0


def weights_inspect(args) -> int:
    from gfpgan_debug.weights import config_summary, model_from_checkpoint

    model, report = model_from_checkpoint(args.path, strict=False)
    config = report.config
    if args.json:
        emit_json({"report": report.to_dict(), "config": config}, args.json)
    else:
        if config:
            print(f"config: {config_summary(config)}")
        print(report)
    return 0 if report.complete and not report.nonfinite else 1


def weights_which(args) -> int:
    from gfpgan_debug.weights import choose_weights

    choice = choose_weights(args.weights)
    if args.json:
        emit_json({"path": str(choice.path), "kind": choice.kind, "reason": choice.reason}, args.json)
    else:
        print(choice)
    return 0


if __name__ == "__main__":
    sys.exit(main())
