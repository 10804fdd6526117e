"""Does the critic tell which of a run's two latent policies scores more? The reach policy's paired gain against the
penalised policy, each as deployed, on a finished run's folders. No training, no env.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/reach_gain.py \
        --run benchmarks/_work/variant_s200k_b2/full/spar_hopper_medium-replay-v0/medium-rectified/seed0 \
        --dataset spar/hopper/medium-replay-v0 --method medium-rectified --seed 0 --label s200k_b2

The reach policy (`TrainConfig.lsi_reach_penalty`, kappa 0) is deployed only where it passes alpha 1 offline
(`drift.reach_eligible`); elsewhere it sits in `rectifier-alternative/` at its own offline alpha (where it was
deployed, the penalised policy sits there). This scores it and the penalised policy (LSI's at kappa 0.25; the
deployed one of the two is in `rectifier-lsi/` where the in-sample candidate replaced it) with the run's own critic
on the same seeded dataset states (`critic_gain.compare_deployed`, the comparison `in_sample_rule=larger_gain`
reads for the candidate): the mean `min Q(s, a) - min Q(s, a_b)` of each and
their paired difference with its standard error. Beside the harness's env scores of both (the record's `alternative`
field), it says whether a "larger gain" rule for the reach policy would have picked the better one. Appends one row
per call to results/reach_gain.json, with the command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent
RESULT = HERE / "results" / "reach_gain.json"


def main(argv: list[str] | None = None) -> None:
    import suite_bench

    from spar_rectify.checkpoint import load_rectifier
    from spar_rectify.critic_gain import compare_deployed
    from spar_rectify.data import load_minari

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    suite_bench.add_run_probe_arguments(parser)
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    run = Path(args.run)
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    choice = summary.get("penalty_choice")
    if not (run / "rectifier-alternative").is_dir() or not choice:
        parser.error(
            f"--run {run}: no second latent policy there (rectifier-alternative/ and summary.json's penalty_choice); "
            "pass a finished run trained with a reach policy (lsi_reach_penalty) and auto_alpha"
        )
    run, anchor = suite_bench.probed_run(parser, args)
    reach_deployed = suite_bench.reach_was_deployed(choice)
    chosen = run / "rectifier-lsi" if (run / "rectifier-lsi").is_dir() else run / "rectifier"  # before the candidate
    reach, penalised = (
        (chosen, run / "rectifier-alternative") if reach_deployed else (run / "rectifier-alternative", chosen)
    )
    gain = compare_deployed(anchor, penalised, reach, load_minari(args.dataset).observations, seed=args.seed)
    row = suite_bench.probe_row(
        args,
        run,
        "reach_gain.py",
        reach_alpha=load_rectifier(reach).alpha,
        penalised_alpha=load_rectifier(penalised).alpha,
        anchor_advantage=choice.get("anchor_advantage"),
        gain=gain.to_dict(),
        clearly_prefers_reach=gain.difference > 2 * gain.difference_se,
        reach_deployed=reach_deployed,
    )
    print(json.dumps({k: v for k, v in row.items() if k != "config"}, indent=1))
    suite_bench.append_result(Path(args.out), row, replaces=("run", "label"))


if __name__ == "__main__":
    main()
