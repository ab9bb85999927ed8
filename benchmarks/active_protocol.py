"""The Curator active-learning protocol over a folder of class subfolders (default: UC Merced).

    .venv/bin/python benchmarks/active_protocol.py --ssl-seeds 3          # UC Merced, as committed (~30-60 min on 2 cores)
    .venv/bin/python benchmarks/active_protocol.py --folder DIR [--quick] [--out FILE] [--workdir CACHE]
    curator protocol --folder DIR ...                                     # the same command

For every class and 5 starter images per class (class subfolders are the ground truth), the seed
set is the starter's nearest neighbours plus random chips (the defaults: 8 + 4 on UC Merced's 2,100
chips, scaled with the pool); then rounds of chips picked by the acquisition (batches of 8, growing
with the pool above 2,100) are labelled by an oracle, a round ending exactly at each effort point
(5.0, 6.0, 7.8, 10.0 % of the pool). Reported at those points: recall, F1 and false-positive share
of the curated set (labelled positives + chips the head predicts positive), per split: classes at
even positions of the sorted names are dev (the defaults were chosen on them only,
benchmarks/protocol_levers.py), odd ones test. The defaults (SSL recipe, head, acquisition) are
fixed in curator_widgets/protocol.py; the kernel is `protocol.run_protocol`. `--ssl-seeds N` runs
every session on N SSL models of the recipe (the committed UC Merced result uses 3): one model's
per-class recall moves with its training draw.

Writes benchmarks/results/active_protocol[_quick].json for UC Merced, else
benchmarks/results/active_protocol_<folder name>[_quick].json (or --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402  (puts this checkout first on sys.path)

from curator_widgets.paths import shared_data_dir  # noqa: E402


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from curator_widgets.commands.protocol import add_arguments, run_from_args

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap, default_folder=str(shared_data_dir() / "ucmerced"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = run_from_args(args, results_dir=ROOT / "benchmarks" / "results")
    write_results(result["out"], result, seeds=[args.seed], started=t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
