"""The ``trustml`` command: parse arguments, call protocol/report/acquire; nothing else.

Exit status: 0 every acceptance criterion holds (``verify``: the run reproduced); 1 the run
finished and some criterion fails (``verify``: some number differs); 2 the protocol, its data,
``--out`` or a results folder is invalid (one line on stderr, nothing written); 3 the run could
not finish (a diverging model, memory, a user's code raising: one line naming the stage, no
report written, ``--debug`` shows the traceback); 130 / 143 interrupted by Ctrl-C / SIGTERM
(one line saying what was kept).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

from trustml.exceptions import (
    EXIT_FAIL,
    EXIT_INVALID,
    EXIT_PASS,
    EXIT_UNFINISHED,
    RunFailed,
    RunInterrupted,
    TrustmlInputError,
)

__all__ = ["console", "main"]

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own usage errors also exit 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"trustml: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    from trustml import __version__

    p = _Parser(
        prog="trustml",
        description="How far can a deep-learning model of scientific data be trusted? "
        "Calibrated uncertainty, checked explanations, reproducible reports.",
    )
    p.add_argument("--version", action="version", version=f"trustml {__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on an error, print the Python traceback too"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = sub.add_parser(
        "evaluate", help="run an evaluation protocol and write its report", parents=[common]
    )
    ev.add_argument("protocol", help="protocol YAML file")
    ev.add_argument(
        "--out",
        help="output folder (default: report.out, else reports/NAME); must be new, empty or "
        "a trustml run folder",
    )
    ev.add_argument(
        "--force",
        action="store_true",
        help="write into an --out folder that holds other files (only trustml's own files "
        "in it are replaced; nothing else is touched)",
    )
    ev.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a protocol value, e.g. --set uncertainty.members=3 (repeatable)",
    )
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")

    ver = sub.add_parser(
        "verify", help="re-run a finished evaluation and check it reproduces", parents=[common]
    )
    ver.add_argument("outdir", help="a folder written by 'trustml evaluate'")
    ver.add_argument(
        "--rtol",
        type=_rtol,
        default=0.0,
        metavar="FLOAT",
        help="relative tolerance for numbers (default 0: identical); e.g. 1e-6 on other hardware",
    )
    ver.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")

    rep = sub.add_parser(
        "report", help="re-render report.html from saved results (no re-run)", parents=[common]
    )
    rep.add_argument("outdir", help="a folder written by 'trustml evaluate'")

    acq = sub.add_parser(
        "acquire",
        help="fit a protocol's primary method and pick pool samples to label next",
        parents=[common],
    )
    acq.add_argument("protocol", help="protocol YAML file")
    acq.add_argument("--pool", required=True, help="HDF5 file of unlabeled inputs")
    acq.add_argument("--inputs", default="/x", help="inputs key in the pool (default /x)")
    acq.add_argument("--budget", required=True, type=int, help="how many samples to pick")
    acq.add_argument(
        "--strategy",
        help="acquisition strategy (default: bald for classification, epistemic_variance "
        "for regression)",
    )
    acq.add_argument(
        "--out",
        default="picks",
        help="output folder (default: picks); must be new, empty or a trustml folder; "
        "member checkpoints under OUT/checkpoints are reused",
    )
    acq.add_argument(
        "--force", action="store_true", help="write into an --out folder holding other files"
    )
    acq.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a protocol value (repeatable)",
    )
    acq.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")

    init = sub.add_parser("init", help="write a commented starter protocol", parents=[common])
    init.add_argument("path", nargs="?", default="protocol.yaml", help="where to write it")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    data = sub.add_parser("data", help="builtin datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    ex = dsub.add_parser(
        "export", help="write a builtin dataset as HDF5 in trustml's layout", parents=[common]
    )
    ex.add_argument("name", help="builtin dataset name (cosmology2d, cosmology3d, digits)")
    ex.add_argument("out", help="output .h5 file")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--force", action="store_true", help="overwrite an existing file")
    ex.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. --option n=500 (value parsed as YAML; repeatable)",
    )
    return p


def _evaluate(args: argparse.Namespace) -> int:
    from trustml.protocol import load_protocol, resolve_outdir, run_protocol

    protocol, text = load_protocol(args.protocol, args.overrides)
    outcome = run_protocol(
        protocol,
        text,
        base_dir=Path(args.protocol).resolve().parent,
        out=args.out,
        progress=False if args.quiet else None,
        command=["trustml", *sys.argv[1:]],
        force=args.force,
    )
    if outcome.results is None:  # an MPI rank other than 0: rank 0 reports
        return EXIT_PASS if outcome.passed else EXIT_FAIL
    summary = outcome.results.summary
    if not args.quiet:
        for a in summary["acceptance"]:
            mark = "pass" if a["passed"] else "FAIL"
            print(f"  [{mark}] {a['metric']} = {a['value']:.4g} ({a['bound']} {a['threshold']:g})")
        print(f"verdict: {summary['verdict']}")
        print(f"report: {resolve_outdir(protocol, args.out) / 'report.html'}")
    return EXIT_PASS if outcome.passed else EXIT_FAIL


def _acquire(args: argparse.Namespace) -> int:
    from trustml.protocol import load_protocol
    from trustml.protocol.acquire import run_acquire

    protocol, text = load_protocol(args.protocol, args.overrides)
    outcome = run_acquire(
        protocol,
        protocol_text=text,
        command=["trustml", *sys.argv[1:]],
        pool=args.pool,
        budget=args.budget,
        base_dir=Path(args.protocol).resolve().parent,
        inputs=args.inputs,
        strategy=args.strategy,
        out=args.out,
        force=args.force,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if outcome.indices is not None and not args.quiet:
        print(f"picked {len(outcome.indices)} samples ({outcome.strategy})")
        print(f"picks: {outcome.outdir / 'picks.csv'}")
    return EXIT_PASS


def _rtol(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _verify(args: argparse.Namespace) -> int:
    from trustml.protocol import verify_run

    outcome = verify_run(args.outdir, rtol=args.rtol, progress=False if args.quiet else None)
    tolerance = "exactly" if args.rtol == 0 else f"within rtol={args.rtol:g}"
    outdir = Path(args.outdir)
    if outcome.reproduced:
        print(
            f"reproduced: all {outcome.compared} values in {outdir / 'results.json'} and "
            f"{outdir / 'arrays.h5'} match the re-run {tolerance}"
        )
        return EXIT_PASS
    print(
        f"NOT reproduced: {len(outcome.differences)} of {outcome.compared} values differ from "
        f"the re-run (compared {tolerance})"
    )
    print(outcome.table())
    return EXIT_FAIL


def _report(args: argparse.Namespace) -> int:
    from trustml.report import rebuild_report

    print(f"report: {rebuild_report(args.outdir)}")
    return EXIT_PASS


def _init(args: argparse.Namespace) -> int:
    from trustml.protocol import starter_protocol
    from trustml.utils.atomic import atomic_write_text

    path = Path(args.path)
    if path.exists() and not args.force:
        raise TrustmlInputError(f"{path}: already exists; pass --force to overwrite")
    atomic_write_text(path, starter_protocol())
    print(f"wrote {path}; run it with: trustml evaluate {path}")
    return EXIT_PASS


def _data_export(args: argparse.Namespace) -> int:
    from trustml.data import export_builtin
    from trustml.protocol import load_yaml

    options = {}
    for item in args.option:
        if "=" not in item:
            raise TrustmlInputError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        flag = {"seed": "--seed", "overwrite": "--force"}.get(key.strip())
        if flag is not None:
            raise TrustmlInputError(f"--option {key.strip()}: not a dataset option; use {flag}")
        options[key.strip()] = load_yaml(value, source=f"--option {key}")
    out = Path(args.out)
    if out.is_dir():
        raise TrustmlInputError(f"{out}: is a folder; give the path of the .h5 file to write")
    if out.exists() and not args.force:  # the rule of 'trustml init'
        raise TrustmlInputError(f"{out}: already exists; pass --force to overwrite")
    path = export_builtin(args.name, out, seed=args.seed, overwrite=args.force, **options)
    print(f"wrote {path}")
    return EXIT_PASS


def _rank() -> int:
    from trustml.distributed import get_comm

    return get_comm().rank


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trustml`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    # trustml's own log lines only: other libraries' INFO chatter (e.g. ArviZ's optional
    # modules) stays out of the terminal.
    log = logging.getLogger("trustml")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[trustml] %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    handlers = {
        "evaluate": _evaluate,
        "verify": _verify,
        "acquire": _acquire,
        "report": _report,
        "init": _init,
        "data": _data_export,
    }
    debug = getattr(args, "debug", False)
    try:
        with _sigterm_raises():
            return handlers[args.command](args)
    except TrustmlInputError as exc:
        # Under MPI every rank meets the same invalid input; one of them says so.
        if _rank() == 0:
            _say(exc, debug)
        return EXIT_INVALID
    except RunFailed as exc:
        _say(exc, debug, hint=True)
        return EXIT_UNFINISHED
    except _Terminated:
        print("trustml: terminated; nothing was written", file=sys.stderr)
        return EXIT_TERMINATED
    except RunInterrupted as exc:
        print(f"trustml: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc.__context__, _Terminated) else EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("trustml: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: one line, exit 3
        lines = str(exc).strip().splitlines()
        _say(
            f"unexpected {type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "),
            debug,
            hint=True,
            exc=exc,
        )
        return EXIT_UNFINISHED


def _say(
    what: BaseException | str, debug: bool, *, hint: bool = False, exc: BaseException | None = None
) -> None:
    """One line on stderr (the traceback first with ``--debug``)."""
    exc = what if isinstance(what, BaseException) else exc
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(what).split())  # exactly one line
    if hint and not debug:
        message += " (run with --debug for the traceback)"
    print(f"trustml: error: {message}", file=sys.stderr)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time limit, ``kill``): unwound like Ctrl-C, so that what a
    run was writing is cleaned up and the last line says what was kept."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: What the commands that train import sooner or later: loaded up front with the garbage
#: collector paused (TorchDynamo is what ``torch.optim`` imports at an optimizer's first step).
_PRELOAD = {
    "evaluate": ("trustml.protocol", "torch._dynamo"),
    "verify": ("trustml.protocol", "torch._dynamo"),
    "acquire": ("trustml.protocol", "torch._dynamo"),
}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, then freeze (stop tracking) every object made so far.

    Importing torch, TorchDynamo and SymPy creates millions of long-lived objects, and the
    collector traverses them again and again while they load: 0.8 s of the 3.3 s start-up on
    the 2-core machine. Frozen, they are not traversed by later collections either.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def console() -> None:
    """The ``trustml`` command: :func:`main` in a process that exits right after it.

    Unlike :func:`main` (which tests and notebooks call in-process), this tunes the garbage
    collector for a short-lived process, saving about 1.8 s per command, and per MPI rank, on
    the 2-core machine: imports run with it paused (:func:`_gc_paused`), and before exiting
    every object is frozen, so the interpreter's shutdown skips its last full collection
    (about 1 s). Exit handlers (``MPI_Finalize``, log flushing) still run.
    """
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    with _gc_paused():
        for name in _PRELOAD.get(command or "", ()):
            importlib.import_module(name)
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
