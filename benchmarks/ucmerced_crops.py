"""A 33,600-image folder of real scene chips: UC Merced's 2,100 images cut into 4 x 4 crops of 64 px.

The CPU budget of the protocol (issue 14) is stated for a 30k-image folder; this makes one from the
data the project already has. Each image is resized to 256 px (a few are 247-255 px) and cut into
16 non-overlapping 64 px crops, saved as PNG under DIR/<class>/<image>_<row><col>.png, so a crop's
label is its parent's class. Existing crops are kept, so a second run is a no-op.

    python benchmarks/ucmerced_crops.py [--out DIR]    # then: benchmarks/active_protocol.py --folder DIR

`--split dev|test --per-class N` makes a pool in the other regime of the public 64 px scene sets (about 10
classes, each ~10% of the pool, where UC Merced's classes are 4.8%): only the protocol's dev (or test)
classes, N crops of each drawn with a fixed seed, linked from the full crop folder.

    python benchmarks/ucmerced_crops.py --split dev --per-class 900 --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402,F401  (puts this checkout first on sys.path)

from curator_widgets.paths import shared_data_dir  # noqa: E402

GRID = 4  # crops per side: 16 per image, 33,600 in all
CROP = 64  # px


def make_crops(src: Path, out: Path) -> int:
    """Write the crops of every image under src/<class>/ to out/<class>/ (skipping ones already there); the count."""
    from PIL import Image

    count = 0
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (out / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir()):
            names = [out / cls.name / f"{f.stem}_{r}{c}.png" for r in range(GRID) for c in range(GRID)]
            if all(n.exists() for n in names):
                count += len(names)
                continue
            with Image.open(f) as im:
                im = im.convert("RGB").resize((GRID * CROP, GRID * CROP), Image.BICUBIC)
                for i, name in enumerate(names):
                    r, c = divmod(i, GRID)
                    im.crop((c * CROP, r * CROP, (c + 1) * CROP, (r + 1) * CROP)).save(name)
            count += len(names)
    return count


def subset_pool(crops: Path, out: Path, split: str, per_class: int, seed: int = 0) -> int:
    """Link `per_class` crops of each `split` class (protocol.split_classes) from `crops` into out/<class>/."""
    import numpy as np

    from curator_widgets.protocol import split_classes

    classes = split_classes([p.name for p in crops.iterdir() if p.is_dir()])[split]
    count = 0
    for i, cls in enumerate(classes):
        files = sorted((crops / cls).glob("*.png"))
        if len(files) < per_class:
            raise SystemExit(f"{cls} has {len(files)} crops, fewer than --per-class {per_class}")
        pick = np.sort(np.random.default_rng([seed, i]).choice(len(files), per_class, replace=False))
        (out / cls).mkdir(parents=True, exist_ok=True)
        for j in pick:
            link = out / cls / files[j].name
            if not link.exists():
                link.symlink_to(files[j].resolve())
        count += per_class
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(shared_data_dir() / "ucmerced"), help="folder of class subfolders")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ucmerced-crops64"),
                    help="where the crops go (default: benchmarks/results/ucmerced-crops64, gitignored)")
    ap.add_argument("--split", choices=("dev", "test"), help="only the protocol's dev or test classes ...")
    ap.add_argument("--per-class", type=int, default=900, help="... this many crops of each (with --split; default 900)")
    ap.add_argument("--crops", default=str(ROOT / "benchmarks" / "results" / "ucmerced-crops64"),
                    help="with --split: the full crop folder (made first if missing)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.split:
        if Path(args.out).resolve() == Path(args.crops).resolve():
            raise SystemExit(f"--split writes a pool of links: --out {args.out} is the crop folder itself; "
                             "pass another --out, e.g. --out POOLS/dev")
        make_crops(Path(args.src), Path(args.crops))
        n = subset_pool(Path(args.crops), Path(args.out), args.split, args.per_class)
    else:
        n = make_crops(Path(args.src), Path(args.out))
    print(f"{n} crops in {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
