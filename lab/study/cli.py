"""`python -m lab run RECIPE.yaml [--out DIR] [--profile NAME] [--smoke] [--force]`;
`python -m lab report OUT`; `python -m lab estimate RECIPE.yaml` (expected GPU hours);
`python -m lab task show TASK_OR_RECIPE` (a task's splits, scoring and rendered prompts);
`python -m lab compare OUT1 OUT2 ...` (many studies' paired FT-minus-ICL gains on one page).

Exit codes: 0 done; 2 a mistake the user can fix (one line on stderr names it and the fix);
130 stopped by Ctrl-C (SIGINT) and 143 by SIGTERM (e.g. a cluster preempting the job): the
run stops cleanly (the open cell's W&B run is marked failed, no file is left half-written)
and rerunning the same command resumes it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from lab.core.errors import LabError


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import datasets

    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()  # "Generating train split" bars of the benchmark tasks
    import logging

    # "Removed shared tensor {'lm_head.weight'}" on every resume checkpoint of a model with
    # tied embeddings: expected (the tie is restored on load; resume is tested bit-exact).
    logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run (or resume) a study from a recipe")
    run.add_argument("recipe", help="path to a YAML recipe")
    run.add_argument(
        "--out", help="output directory (default runs/<recipe name>[-<profile>][-smoke])"
    )
    run.add_argument("--profile", help="apply the recipe's named overrides `profiles: {NAME: ...}`")
    run.add_argument("--smoke", action="store_true", help="tiny random model, tiny sizes (<1 min)")
    run.add_argument("--force", action="store_true", help="start over if OUT holds another recipe")
    run.add_argument("--cache-dir", help="model cache (default $FTLAB_CACHE or ~/.cache/ft-vs-icl)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    rep = sub.add_parser("report", help="rewrite OUT/report/ from a study's finished cells")
    rep.add_argument("out", help="the study's output directory")
    from lab.study import estimate

    estimate.add_parser(sub)
    from lab.study import task_show as task_show

    task_show.add_parser(sub)
    from lab.report import compare

    compare.add_parser(sub)
    args = ap.parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, _terminated)  # preemption: stop like Ctrl-C
    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; a study must stop cleanly on SIGINT however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.cmd == "report":
            _quiet_libraries()
            from lab.study.publish import rebuild_report

            rebuild_report(args.out)
            return 0
        if args.cmd == "estimate":
            _quiet_libraries()
            return estimate.main(args)
        if args.cmd == "compare":
            return compare.main(args)
        if args.cmd == "task":
            _quiet_libraries()
            return task_show.main(args)
        from lab.core.recipe import load_recipe

        recipe = load_recipe(args.recipe, smoke=args.smoke, profile=args.profile)
        suffix = (f"-{args.profile}" if args.profile else "") + ("-smoke" if args.smoke else "")
        out = Path(args.out or f"runs/{recipe.name}{suffix}")
        _quiet_libraries()
        from lab.study.run import run_study
        from train.sharded import end_process_group

        run_study(
            recipe,
            out,
            force=args.force,
            progress=not args.quiet,
            cache_dir=args.cache_dir,
            profile=args.profile,
            smoke=args.smoke,
        )
        end_process_group()
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("Ctrl-C", 130)
        print(  # on a fresh line: a progress bar may be mid-line
            f"\nerror: stopped by {name}; finished cells and the last training checkpoint are "
            "kept: rerun the same command to resume",
            file=sys.stderr,
        )
        return code
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()
