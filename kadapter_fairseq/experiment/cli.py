"""``kadapter-experiment``: run an experiment grid, or rebuild its report.

    kadapter-experiment run EXPERIMENT.yaml --out DIR [key=value ...]
    kadapter-experiment report DIR

``key=value`` overrides change the experiment config (``seeds=[1,2]``, ``tasks.semeval.updates=10``);
overrides of ``hydra/...`` and ``hydra.…`` pick and configure the launcher that runs the grid:
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (parallel local runs),
``hydra/launcher=submitit_slurm hydra.launcher.partition=...`` (SLURM), ``hydra/launcher=submitit_local``.
Running again in the same DIR skips every finished run and finishes the rest.
"""
import argparse
import os
import sys

# libgomp's busy-waiting threads make small models many times slower on shared cores; must be set
# before torch is imported (launcher workers inherit it)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROG = "kadapter-experiment"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or finish) an experiment")
    run.add_argument("config", help="experiment YAML (e.g. examples/experiments/demo.yaml)")
    run.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    run.add_argument("--check", action="store_true", help="validate the config and plan every run (composing its "
                     "training config), print the plan size, run nothing")
    run.add_argument("overrides", nargs="*", help="key=value overrides (hydra syntax)")
    rep = sub.add_parser("report", help="rebuild results.json, results.md and results.png from DIR/runs")
    rep.add_argument("dir")
    return p


def print_summary(results: dict, out_dir: str):
    """The positive control's figures and verdict (first), the arms' table, the seed-noise statements and the
    hypotheses' sentences."""
    with open(os.path.join(out_dir, "results.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    if results.get("positive_control"):
        from .control import summary

        print("\n".join(summary(results["positive_control"])) + "\n")
        if not results["positive_control"]["holds"]:
            print("arms (uncalibrated: the positive control did not hold):")
    start = next((i for i, line in enumerate(lines) if line.startswith("| variant |")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    print("\n".join(lines[start:end]))
    if results.get("statements"):
        print()
        for s in results["statements"]:
            print(s)
        print(f"(seed-noise rule: {results['seed_noise_rule']})")
    if results.get("hypotheses"):
        print()
        for h in results["hypotheses"]:
            print(h["statement"])
    print(f"\nwrote {os.path.join(out_dir, 'results.json')}, results.md, results.png")


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    import logging

    # importing fairseq set the root logger to DEBUG: keep hydra's and matplotlib's chatter out of the output
    logging.getLogger().setLevel(logging.WARNING)
    # overrides may come before or after --out; anything else unknown is a usage error
    bad = [a for a in unknown if a.startswith("-") or args.command != "run"]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if args.command == "run":
        args.overrides = list(args.overrides) + unknown
    from ..errors import KAdapterError

    try:
        if args.command == "report":
            from .report import write_reports

            results = write_reports(args.dir)
            print_summary(results, args.dir)
            return 0
        from .config import load_experiment, split_overrides

        mine, launcher = split_overrides(args.overrides)
        exp = load_experiment(args.config, mine)
        if args.check:
            from .plan import plan_experiment
            from .runner import describe

            # planning composes every run's fairseq config: a bad override fails here, not mid-grid
            plan = plan_experiment(exp, args.out)
            units = "" if not exp.several_knowledge_seeds else \
                f"; knowledge seeds {[u.knowledge_seed for u in exp.units]}, downstream seeds per unit " \
                f"{[u.seeds for u in exp.units]}"
            print(f"{args.config}: valid; {len(plan.runs)} runs ({', '.join(exp.tasks)} x "
                  f"{', '.join(v.name for v in exp.variants)} x seeds {exp.seeds}{units}); "
                  f"{len(plan.knowledge)} knowledge stage(s); {describe(exp).split('; ', 1)[1]}")
            for problem, what in plan.runtime_problems().items():
                print(f"note: {len(what)} training(s) cannot run on this machine (e.g. {what[0]}): {problem}")
            return 0
        from .runner import run_experiment

        results = run_experiment(exp, args.out, launcher)
        print_summary(results, args.out)
        return 0
    except KAdapterError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
