"""``hpo``: run, validate and inspect sweeps. The one place where objects are wired together.

Exit codes: 0 success, 1 runtime failure, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from hpo.errors import ClusterError, ConfigError, HpoError, TrackingError
from hpo.loading import load_sweep, parse_overrides

if TYPE_CHECKING:
    from hpo.config import SweepConfig

EXIT_OK, EXIT_RUNTIME, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hpo`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow logs schema migrations at INFO
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # its bars would cut into our lines
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.handler(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except (TrackingError, ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except HpoError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./.hpo/mlflow.db)")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout at the end")


def _verbose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="print the start-up phases (seconds since launch) on stderr as they end")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter search for PyTorch: Ray Tune + Optuna, tracked in MLflow.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a sweep file")
    run.add_argument("file", help="sweep file (YAML)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field, e.g. --set budget.trials=20 --set parameters.lr.max=0.5")
    _json_option(run)
    run.add_argument("--ray-address", metavar="ADDR",
                     help="run trials on this Ray cluster: auto | HOST:PORT | ray://HOST:PORT (overrides ray.address)")
    run.add_argument("--new", action="store_true",
                     help="start a fresh sweep even if the latest sweep of this name did not finish "
                          "(by default it is resumed: its ended trials are kept, the ones in flight re-run)")
    _verbose_option(run)
    run.set_defaults(handler=_cmd_run)

    resume = commands.add_parser(
        "resume", help="continue a sweep that did not finish (crashed, interrupted), with the config stored on it",
        description="Continue a sweep from the store: trials that ended are kept and shown to the search, "
                    "trials in flight when the driver died are run again under their numbers. "
                    "It runs the config stored with the sweep (resolved_config.json: the --set values it ran "
                    "with included); raise the budget with --set budget.trials=N to extend a finished sweep.",
    )
    resume.add_argument("target", metavar="NAME|RUN_ID", help="sweep name (its latest run) or a sweep's parent run id")
    resume.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. --set budget.trials=40 (only budget.trials / budget.time_limit_s may grow)")
    _store_option(resume)
    _json_option(resume)
    _verbose_option(resume)
    resume.set_defaults(handler=_cmd_resume, ray_address=None, new=False)

    confirm = commands.add_parser(
        "confirm", help="re-run a finished sweep's top configurations with fresh seeds; winner by mean, with intervals",
        description="Train the sweep's top K configurations again with N fresh seeds each (child runs of kind "
                    "confirm), rank them by mean validation metric with 95%% intervals, and test the winner "
                    "against the runner-up (Welch's t-test). The winner becomes the sweep's best trial.",
    )
    confirm.add_argument("target", metavar="NAME|RUN_ID", help="sweep name (its latest run) or a sweep's parent run id")
    confirm.add_argument("--top", type=int, help="configurations to confirm (default: the sweep's confirm.top, or 3)")
    confirm.add_argument("--seeds", type=int, help="fresh seeds per configuration (default: confirm.seeds, or 5)")
    _store_option(confirm)
    _json_option(confirm)
    confirm.set_defaults(handler=_cmd_confirm)

    validate = commands.add_parser("validate", help="check a sweep file without running it")
    validate.add_argument("file")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(handler=_cmd_validate)

    best = commands.add_parser("best", help="top trials of a sweep, read from the store")
    best.add_argument("name", help="sweep name (its latest run) or a sweep's parent run id")
    best.add_argument("--top", type=_positive_int, default=5, help="how many trials (default 5)")
    _store_option(best)
    _json_option(best)
    best.set_defaults(handler=_cmd_best)

    diagnose = commands.add_parser(
        "diagnose", help="verdict, evidence and advice for a trial, or a sweep's summary",
        description="Diagnose overfitting, underfitting and divergence from learning curves.",
    )
    diagnose.add_argument("target", nargs="?", help="a trial's run id, a sweep's parent run id or a sweep name")
    diagnose.add_argument("--history", metavar="FILE",
                          help='JSON file {"train_loss": [...], "val_loss": [...], ...} instead of a stored run')
    _store_option(diagnose)
    _json_option(diagnose)
    diagnose.set_defaults(handler=_cmd_diagnose)

    dashboard = commands.add_parser("dashboard", help="start the Streamlit dashboard on 127.0.0.1")
    _store_option(dashboard)
    dashboard.add_argument("--port", type=int, default=None, help="default 8501")
    dashboard.add_argument("--host", default=None, help="default 127.0.0.1 (set 0.0.0.0 to share on a network)")
    dashboard.set_defaults(handler=_cmd_dashboard)

    ui = commands.add_parser("ui", help="start the MLflow UI and the dashboard for the store; Ctrl-C stops both")
    _store_option(ui)
    ui.add_argument("--mlflow-port", type=int, default=None, help="MLflow UI port for a database store (default 5000)")
    ui.add_argument("--port", type=int, default=None, help="dashboard port (default 8501)")
    ui.add_argument("--host", default=None, help="default 127.0.0.1")
    ui.set_defaults(handler=_cmd_ui)

    compress = commands.add_parser(
        "compress", help="int8, pruned, distilled and ONNX variants of a sweep's winner, logged as child runs",
        description="Make the winner small and fast: each variant measured (metric, size, CPU latency) and "
                    "logged as a child run of the sweep; the fp32 winner logged as an MLflow Model.",
    )
    compress.add_argument("target", metavar="NAME|RUN_ID", help="sweep name, sweep run id, or the best trial's run id")
    compress.add_argument("--methods", nargs="+", metavar="METHOD",
                          help="dynamic_int8 static_int8 onnx_int8 prune_global prune_structured distill onnx "
                               "(default: all that apply to the model)")
    compress.add_argument("--sparsities", nargs="+", type=float, metavar="S",
                          help="global pruning sparsities, each in (0, 1) (default 0.5 0.8 0.9)")
    compress.add_argument("--structured-sparsity", type=float, help="share of units/channels removed (default 0.5)")
    compress.add_argument("--finetune-epochs", type=int, help="fine-tune epochs after pruning (default 3)")
    compress.add_argument("--distill-epochs", type=int, help="student epochs (default: the winner's epochs)")
    compress.add_argument("--distill-trials", type=int,
                          help="students of a small sweep over temperature and alpha; the best is kept (default 0: "
                          "one student with --temperature and --alpha)")
    compress.add_argument("--student-width", type=float, help="student hidden / winner hidden (default 0.5)")
    compress.add_argument("--student-layers", type=int, help="student layers (default 0: one fewer than the winner)")
    compress.add_argument("--temperature", type=float, help="distillation temperature (default 4)")
    compress.add_argument("--alpha", type=float, help="weight of the distillation loss (default 0.7)")
    compress.add_argument("--max-drop", type=float,
                          help="largest metric drop a variant may show to be exported to ONNX (default 0.01)")
    compress.add_argument("--threads", type=int, help="CPU threads while measuring (default 1)")
    compress.add_argument("--repeats", type=int, help="timed calls per latency figure (default 30)")
    compress.add_argument("--warmup", type=int, help="untimed calls before timing (default 5)")
    compress.add_argument("--large-batch", type=int, help="batch size of the throughput figures (default 256)")
    compress.add_argument("--calibration-samples", type=int,
                          help="training examples that calibrate static int8 (default 1024)")
    _store_option(compress)
    _json_option(compress)
    compress.set_defaults(handler=_cmd_compress)

    reproduce = commands.add_parser(
        "reproduce", help="run one stored trial again and compare its per-epoch metrics with the store's",
        description="Run a trial again from what the store holds (its config and seed, the sweep's task and "
                    "trainer settings, its thread count), in this process, and compare every per-epoch metric "
                    "with the stored one (wall-clock metrics aside). Exit 0 when reproduced within --tol, 1 "
                    "when not (naming the first epoch and metric that differ), 2 for an unknown or non-trial id.",
    )
    reproduce.add_argument("run_id", metavar="RUN_ID", help="a trial's run id (`hpo best NAME --json` lists them)")
    reproduce.add_argument("--tol", type=float, default=0.0,
                           help="largest absolute difference still counted as reproduced (default 0: exact, "
                                "which the CPU path with the recorded thread count achieves)")
    reproduce.add_argument("--ignore", nargs="+", default=[], metavar="METRIC",
                           help="metrics not to compare (your trainer's timings); a name ending in / is a prefix "
                                "(signals/: every training signal); epoch_seconds and latency_ms never are")
    _store_option(reproduce)
    _json_option(reproduce)
    reproduce.set_defaults(handler=_cmd_reproduce)

    sync = commands.add_parser(
        "sync", help="write results journaled during a store outage (or by a killed driver) to the store",
        description="Every write of a sweep goes to a journal under $HPO_HOME/journal first, then to the store. "
                    "Write what a store outage or a killed driver left there, once (no duplicate runs or points).",
    )
    sync.add_argument("name", nargs="?", help="a sweep name or its parent run id (default: every journal)")
    sync.add_argument("--all", action="store_true", help="every journal (the default without NAME)")
    sync.add_argument("--tracking-uri", help="the store, when its URI carries a password (journals keep none)")
    sync.set_defaults(handler=_cmd_sync)
    return parser


def _cmd_sync(args: argparse.Namespace) -> int:
    from hpo import defaults
    from hpo.sync import check_sync_args, sync_command
    from tracker.mlflow_log import open_client

    check_sync_args(args.name, args.all)
    uri = None if args.tracking_uri is None else defaults.tracking_uri(args.tracking_uri)
    code, lines = sync_command(args.name, uri, open_client)
    print("\n".join(lines))
    return code


# -- run -------------------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    if args.ray_address is not None:
        overrides["ray.address"] = json.dumps(args.ray_address)  # a quoted YAML string: never read as a number
    config, text = load_sweep(args.file, overrides)
    return _run_loaded(args, config, text)


def _run_loaded(args: argparse.Namespace, config: SweepConfig, text: str, resume_run_id: str | None = None) -> int:
    """Run (or resume) a validated sweep and print its leaderboard or JSON; the exit code."""
    from hpo import defaults, rules, sampler_choice
    from hpo.startup import PhaseClock

    clock = PhaseClock(verbose=args.verbose, stream=sys.stderr)
    clock.mark("sweep loaded")
    from hpo.runner import run_sweep

    clock.mark("driver imported")
    uri = defaults.tracking_uri(config.tracking_uri)
    if note := rules.finite_space_note(config):  # a remark, not an error: the sweep still runs
        print(note, file=sys.stderr)
    print(
        f"sweep {config.name}: {config.method} ({config.sampler_name}) over {len(config.parameters)} parameters, "
        f"{rules.trials_planned(config)} trials, {', '.join(f'{m.goal} {m.name}' for m in config.objectives)}",
        file=sys.stderr,
    )
    if config.method == "bayes":  # which sampler runs, and why (also the sweep run's hpo.sampler_reason tag)
        print(sampler_choice.choose(config).describe(), file=sys.stderr)
    # Ray prints some cluster messages (a worker process that died, ...) to stdout from a thread: with
    # --json, stdout must hold the one JSON document only, so everything else goes to stderr meanwhile.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        sweep_dir = os.path.dirname(os.path.abspath(args.file)) if getattr(args, "file", None) else None
        result = run_sweep(config, text, new=args.new, resume_run_id=resume_run_id, sweep_dir=sweep_dir, clock=clock)
    from hpo.report import leaderboard_text, result_json, where_to_look

    if args.json:
        print(json.dumps(result_json(result), indent=2, default=str))
    else:
        print(leaderboard_text(result))
        print(where_to_look(result, uri))
        if result.compression is not None and "error" not in result.compression:
            from hpo.compress import render

            print(render(result.compression))
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.best is None:
        print("error: no trial produced a value of the sweep metric; see the FAILED trials' errors above",
              file=sys.stderr)
        return EXIT_RUNTIME
    if result.compression is not None and "error" in result.compression:
        return EXIT_RUNTIME  # said on stderr when the stage failed; the search's results are stored
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    config, _ = load_sweep(args.file, parse_overrides(args.overrides))
    from hpo import rules, sampler_choice

    trials = rules.trials_planned(config)
    if note := rules.finite_space_note(config):  # a remark, not an error: the sweep still runs
        print(note, file=sys.stderr)
    print(f"{args.file}: ok - {config.method} ({config.sampler_name}) sweep {config.name!r}, {trials} trials of "
          f"up to {config.max_epochs} epochs, {', '.join(f'{m.goal} {m.name}' for m in config.objectives)}")
    if config.method == "bayes":
        print(f"  {sampler_choice.choose(config).describe()}")
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    """``hpo resume``: the config the sweep ran with (its ``--set`` values and raised budgets included),
    new ``--set`` pairs on top, run again as ``hpo run`` would resume it."""
    from hpo import defaults
    from hpo.errors import tracking_errors
    from hpo.resume import find_sweep_run, stored_sweep
    from tracker.mlflow_log import open_client

    overrides = parse_overrides(args.overrides)
    uri = defaults.tracking_uri(args.tracking_uri)
    overrides["tracking_uri"] = json.dumps(uri)  # the store it was found in, whatever the stored config says
    with tracking_errors():
        client = open_client(uri)
        run = find_sweep_run(client, args.target)
        config, text = stored_sweep(client, run, overrides)
    return _run_loaded(args, config, text, resume_run_id=run.info.run_id)


def _cmd_confirm(args: argparse.Namespace) -> int:
    from hpo.confirm_command import confirm_stored

    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = confirm_stored(args.target, args.tracking_uri, args.top, args.seeds)
    from hpo.report import confirmation_text, result_json

    if args.json:
        doc = result_json(result)
        doc.pop("trials")  # the search's trials did not change: `hpo best --json` lists them
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(confirmation_text(result.confirmation or {}))
    return EXIT_OK if result.best is not None else EXIT_RUNTIME


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from hpo import defaults
    from hpo.errors import tracking_errors
    from hpo.reproduce import render, reproduce
    from tracker.mlflow_log import open_client

    with tracking_errors():
        client = open_client(defaults.tracking_uri(args.tracking_uri))
        doc = reproduce(client, args.run_id, args.tol, args.ignore)
    for warning in doc["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(doc, indent=2, default=str) if args.json else render(doc))
    return EXIT_OK if doc["reproduced"] else EXIT_RUNTIME


# -- best ------------------------------------------------------------------------------------------
def _cmd_best(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from hpo.report import best_from_store

    out = out or sys.stdout  # looked up now: a default of sys.stdout would bypass redirect_stdout and capsys

    rows, text = best_from_store(args.name, args.tracking_uri, args.top)
    if args.json:
        print(json.dumps(rows, indent=2, default=str), file=out)
    else:
        print(text, file=out)
    return EXIT_OK




# -- diagnose --------------------------------------------------------------------------------------
def _cmd_diagnose(args: argparse.Namespace) -> int:
    from hpo.diagnose import diagnose_stored, render

    if (args.history is None) == (args.target is None):
        raise ConfigError("give either a run id / sweep name or --history FILE", source="hpo diagnose")
    if args.history is not None:
        from hpo.diagnosis import HistoryFileError, diagnose, diagnose_trial, read_history_file

        try:
            found = read_history_file(args.history)
        except HistoryFileError as e:
            raise ConfigError(str(e)) from None
        # the one path: the curves and any signals/* series in the file (a loss or accuracy series is required)
        found_diagnosis = diagnose_trial(found.history, params=found.params, n_classes=found.n_classes,
                                         val_size=found.val_size)
        doc: dict[str, Any] = (found_diagnosis or diagnose(found.history, params=found.params,
                                                          n_classes=found.n_classes, val_size=found.val_size)).to_dict()
    else:
        doc = diagnose_stored(args.target, args.tracking_uri)
    if args.json:
        print(json.dumps({k: v for k, v in doc.items() if k != "kind"}, indent=2, allow_nan=False))
    else:
        print(render(doc))
    return EXIT_OK


# -- dashboard -------------------------------------------------------------------------------------
def _cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.server import serve
    from hpo import defaults
    from tracker.uri import redact

    uri = defaults.tracking_uri(args.tracking_uri)
    port = args.port or defaults.DASHBOARD_PORT
    host = args.host or defaults.HOST
    print(f"dashboard: http://{host}:{port}  (store {redact(uri)}; Ctrl-C stops it)", file=sys.stderr)
    return serve(uri, port, host=host)


def _cmd_ui(args: argparse.Namespace) -> int:
    from dashboard.server import command
    from hpo import defaults, ui
    from tracker.uri import redact

    uri = defaults.tracking_uri(args.tracking_uri)
    host = args.host or defaults.HOST
    port = args.port or defaults.DASHBOARD_PORT
    print(f"store: {redact(uri)}", file=sys.stderr)
    services = [
        ui.mlflow_ui(uri, host, args.mlflow_port or defaults.MLFLOW_UI_PORT, defaults.artifact_root()),
        ui.Service("dashboard", f"http://{host}:{port}", command(uri, port, host=host)),
    ]
    return ui.run(services)


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse prints the message as a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


# -- compress --------------------------------------------------------------------------------------
def _cmd_compress(args: argparse.Namespace) -> int:
    from hpo.compress import compress_stored, render, settings_from_args

    settings = settings_from_args(
        args.methods, args.sparsities, structured_sparsity=args.structured_sparsity,
        finetune_epochs=args.finetune_epochs, distill_epochs=args.distill_epochs, distill_trials=args.distill_trials,
        student_width=args.student_width, student_layers=args.student_layers, warmup=args.warmup,
        large_batch=args.large_batch, calibration_samples=args.calibration_samples,
        temperature=args.temperature,
        alpha=args.alpha, max_drop=args.max_drop, threads=args.threads, repeats=args.repeats,
    )
    doc = compress_stored(args.target, args.tracking_uri, settings, explicit_methods=bool(args.methods))
    print(json.dumps(doc, indent=2, default=str) if args.json else render(doc))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

