"""Memory of a real Jupyter server under thumbnail requests for huge images (issue 15).

Eight concurrent `/curator/thumbs` requests (sizes 64..512, twice) per image, on a server with
the extension: a 12000 x 12000 PNG (~20 KB on disk, 144 MP), a 6000 x 6000 JPEG (36 MP, decoded
at 1/8 by draft()) and a 40 x 40 control. Prints RSS before / peak / after and the replies, and
writes benchmarks/results/server_memory.json.

    python benchmarks/server_memory.py [--out FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, markdown_table, write_results  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str] | None = None) -> dict:
    import httpx
    import numpy as np
    import psutil
    from PIL import Image

    from _jupyter import JupyterProcess
    from curator_widgets import Workspace
    from curator_widgets import manifest as mf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "server_memory.json"))
    args = ap.parse_args(argv)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="curator-mem-")) / "root"
    ws = Workspace.create(root / "ws")
    chips = ws.root / "chips"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(chips / "control.png")
    Image.new("1", (12000, 12000)).save(chips / "huge.png")
    Image.new("L", (6000, 6000), 128).save(chips / "big.jpg", quality=70)
    cases = {"control 40x40 PNG": "chips/control.png", "12000x12000 PNG": "chips/huge.png",
             "6000x6000 JPEG": "chips/big.jpg"}
    mf.write(ws.manifest_path, mf.rows_to_table([{"id": i, "key": k, "path": p, "source": "folder"}
                                                 for i, (k, p) in enumerate(cases.items())]))
    server = JupyterProcess(root, token="mem")
    rows = []
    try:
        server.wait()
        proc = psutil.Process(server.proc.pid)

        def get(path: str) -> int:
            return httpx.get(server.url + path, headers={"Authorization": "token mem"}, timeout=600).status_code

        get("/curator/thumbs/ws/0")  # imports and first render done before measuring
        for cid, name in enumerate(cases):
            before = peak = proc.memory_info().rss
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(get, f"/curator/thumbs/ws/{cid}?size={s}") for s in (64, 128, 256, 512) * 2]
                while not all(f.done() for f in futures):
                    peak = max(peak, proc.memory_info().rss)
                    time.sleep(0.02)
            codes = Counter(f.result() for f in futures)
            rows.append({"image": name, "replies": ", ".join(f"{n} x {c}" for c, n in sorted(codes.items())),
                         "rss_before_mb": round(before / 2**20), "rss_peak_mb": round(peak / 2**20),
                         "rss_after_mb": round(proc.memory_info().rss / 2**20),
                         "seconds": round(time.perf_counter() - t0, 2)})
    finally:
        server.stop()
    print(markdown_table(["image", "replies", "rss_before_mb", "rss_peak_mb", "rss_after_mb", "seconds"], rows))
    return write_results(args.out, {"benchmark": "server_memory", "requests_per_image": 8, "rows": rows},
                         seeds=[], started=started)


if __name__ == "__main__":
    main()
