"""SSL training throughput (images/s) at 64 and 224 px, and batched on-device augmentation vs a CPU DataLoader.

Sections, all in one run on real UC Merced chips:
  1. training images/s per backbone and size on the CPU, with the pipeline train_ssl uses
     (uint8 chips in memory -> batched SatelliteAugment on the training device -> model);
  2. augmentation alone and training end to end: batched on-device augmentation vs the classic
     pipeline (torchvision v2 transforms per image in DataLoader worker processes), as a ratio;
  3. only when CUDA is present: the same functions on the GPU (bf16, channels_last, chips
     resident on the GPU) with GPU utilisation sampled by NVML (pynvml) or nvidia-smi while timing.

    .venv/bin/python benchmarks/ssl_throughput.py           # full run (~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/ssl_throughput.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# as `import curator_widgets` does before torch loads: OpenMP threads wait passively (see its __init__)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, ucmerced_workspace, write_results  # noqa: E402

from curator_widgets.augment import AugmentConfig, SatelliteAugment  # noqa: E402
from curator_widgets.data import default_workers, load_chips  # noqa: E402
from curator_widgets.models import Encoder, SSLModel, autocast, build_backbone  # noqa: E402

CPU_PLAN = [("small_cnn", 64, 256), ("small_cnn", 224, 64), ("resnet18", 64, 128), ("resnet18", 224, 32),
            ("resnet50", 64, 64), ("resnet50", 224, 16)]
GPU_PLAN = [("small_cnn", 64, 1024), ("small_cnn", 224, 256), ("resnet18", 64, 1024), ("resnet18", 224, 256),
            ("resnet50", 64, 512), ("resnet50", 224, 128)]
QUICK_PLAN = [("small_cnn", 64, 8), ("small_cnn", 224, 4)]


# ------------------------------------------------------------------------------------------ utilisation
class UtilSampler:
    """Samples device busy-ness while a block runs: GPU via NVML/nvidia-smi, CPU via process CPU time."""

    def __init__(self, device: torch.device, interval: float = 0.1):
        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0 = (0.0, 0.0)

    def __enter__(self) -> "UtilSampler":
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._gpu_loop, daemon=True)
            self._thread.start()
        else:
            self.source = "process cpu time / (wall * cores)"
            t = os.times()
            self._cpu0 = (t.user + t.system, time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
        else:
            t = os.times()
            wall = time.perf_counter() - self._cpu0[1]
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            self.samples = [100.0 * (t.user + t.system - self._cpu0[0]) / max(1e-9, wall * cores)]

    def _gpu_loop(self) -> None:
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.source = "pynvml utilization.gpu"
            while not self._stop.wait(self.interval):
                self.samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            return
        except Exception:
            pass
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self.source = "unavailable (no pynvml, no nvidia-smi)"
            return
        self.source = "nvidia-smi utilization.gpu"
        proc = subprocess.Popen([exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index),
                                 "-lms", str(int(self.interval * 1000))], stdout=subprocess.PIPE, text=True)
        try:
            while not self._stop.is_set():
                line = proc.stdout.readline()
                if not line:
                    break
                try:
                    self.samples.append(float(line.strip()))
                except ValueError:
                    continue
        finally:
            proc.terminate()
            proc.wait(timeout=5)

    def summary(self) -> dict:
        s = np.asarray(self.samples, dtype=float)
        return {"source": self.source, "samples": int(len(s)),
                "mean_util_pct": round(float(s.mean()), 1) if len(s) else None,
                "busy_ge_90_pct_of_samples": round(float((s >= 90).mean() * 100), 1) if len(s) else None}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------ pipelines
def make_model(backbone: str, device: torch.device, channels_last: bool = True) -> tuple[SSLModel, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net, dim = build_backbone(backbone)
    model = SSLModel("simclr", Encoder(net, dim, image_size=64, name=backbone)).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def train_step(model, opt, v0, v1, device, channels_last=True) -> torch.Tensor:
    """Exactly the inner step of train_ssl (bf16 autocast on CUDA, channels_last)."""
    if channels_last:
        v0 = v0.contiguous(memory_format=torch.channels_last)
        v1 = v1.contiguous(memory_format=torch.channels_last)
    with autocast(device, True):
        loss = model(v0, v1)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def device_batches(images: torch.Tensor, batch_size: int, steps: int, device: torch.device):
    """train_ssl's feeding: uint8 chips (resident on the GPU when present) indexed by a permutation."""
    src = images.to(device) if device.type == "cuda" else images
    g = torch.Generator().manual_seed(0)
    for s in range(steps):
        idx = torch.randint(0, len(src), (batch_size,), generator=g).to(src.device)
        yield src[idx].to(device, non_blocking=True)


def measure_training(backbone: str, size: int, batch_size: int, images: torch.Tensor, device: torch.device,
                     pipeline: str = "device", steps: int = 3, warmup: int = 1, workers: int | None = None) -> dict:
    """Images/s of SimCLR training steps (two views each) with either augmentation pipeline."""
    model, opt = make_model(backbone, device)
    aug = SatelliteAugment(size)
    g = torch.Generator(device=device).manual_seed(0)
    if pipeline == "device":
        batches = device_batches(images, batch_size, warmup + steps, device)

        def views():
            for x in batches:
                yield aug(x, g), aug(x, g)
    else:
        loader = dataloader_pipeline(images, size, batch_size, warmup + steps, workers)

        def views():
            for v0, v1 in loader:
                yield v0.to(device, non_blocking=True), v1.to(device, non_blocking=True)

    it = views()
    for _ in range(warmup):
        v0, v1 = next(it)
        train_step(model, opt, v0, v1, device)
    sync(device)
    with UtilSampler(device) as util:
        t0 = time.perf_counter()
        for _ in range(steps):
            v0, v1 = next(it)
            loss = train_step(model, opt, v0, v1, device)
        float(loss)
        sync(device)
        dt = time.perf_counter() - t0
    return {"backbone": backbone, "size": size, "batch_size": batch_size, "pipeline": pipeline, "steps": steps,
            "images_per_s": round(steps * batch_size / dt, 1), "utilization": util.summary(),
            "device": str(device)}


class _TwoViews(torch.utils.data.Dataset):
    """The classic per-image pipeline: torchvision v2 transforms on each uint8 chip in a worker."""

    def __init__(self, images: torch.Tensor, size: int, n: int):
        from torchvision.transforms import v2

        c = AugmentConfig()
        k = 2 * int(np.ceil(3 * c.blur_sigma[1])) + 1
        self.images, self.n = images, n
        self.t = v2.Compose([
            v2.RandomResizedCrop(size, scale=c.crop_scale, ratio=c.crop_ratio, antialias=True),
            v2.RandomHorizontalFlip(c.flip),
            v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
            v2.RandomApply([v2.ColorJitter(c.brightness, c.contrast, c.saturation, c.hue)], p=c.jitter),
            v2.RandomGrayscale(c.grayscale),
            v2.RandomApply([v2.GaussianBlur(k, sigma=c.blur_sigma)], p=c.blur),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        x = self.images[i % len(self.images)]
        return self.t(x), self.t(x)


def dataloader_pipeline(images: torch.Tensor, size: int, batch_size: int, n_batches: int, workers: int | None):
    nw = default_workers(10 ** 6) if workers is None else workers
    ds = _TwoViews(images, size, batch_size * n_batches)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=nw,
                                       generator=torch.Generator().manual_seed(0),
                                       persistent_workers=False, prefetch_factor=4 if nw else None)


def measure_augment(images: torch.Tensor, size: int, batch_size: int, n_batches: int, device: torch.device,
                    workers: int | None = None) -> dict:
    """Two views per chip, augmentation only: batched on `device` vs DataLoader workers on the CPU."""
    aug = SatelliteAugment(size)
    g = torch.Generator(device=device).manual_seed(0)
    batches = list(device_batches(images, batch_size, n_batches + 1, device))
    aug(batches[0], g)
    sync(device)
    t0 = time.perf_counter()
    for x in batches[1:]:
        v0, v1 = aug(x, g), aug(x, g)
    sync(device)
    dev_ips = n_batches * batch_size / (time.perf_counter() - t0)
    loader = dataloader_pipeline(images, size, batch_size, n_batches, workers)
    t0 = time.perf_counter()
    for v0, v1 in loader:
        v0, v1 = v0.to(device), v1.to(device)
    sync(device)
    dl_ips = n_batches * batch_size / (time.perf_counter() - t0)
    return {"size": size, "batch_size": batch_size, "batches": n_batches, "device": str(device),
            "dataloader_workers": default_workers(10 ** 6) if workers is None else workers,
            "device_batched_images_per_s": round(dev_ips, 1), "dataloader_images_per_s": round(dl_ips, 1),
            "ratio": round(dev_ips / dl_ips, 2)}


def gpu_section(dev: torch.device, chips: dict[int, torch.Tensor], quick: bool, steps: int | None) -> dict:
    """Training images/s and utilisation per backbone/size, plus on-device vs DataLoader at 224 px."""
    gsteps = steps or (2 if quick else 20)
    rows = run_section(dev, QUICK_PLAN if quick else GPU_PLAN, chips, gsteps, 1 if quick else 3)
    g_aug = measure_augment(chips[224], 224, 4 if quick else 256, 1 if quick else 8, dev)
    e2e = [measure_training("small_cnn" if quick else "resnet18", 224, 4 if quick else 256, chips[224], dev,
                            pipeline=p, steps=gsteps, warmup=1 if quick else 2) for p in ("device", "dataloader")]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (dry run)"
    return {"name": name, "rows": rows, "augment_224": g_aug,
            "train_ratio_224": {"backbone": e2e[0]["backbone"], "batch_size": e2e[0]["batch_size"],
                                "device_batched_images_per_s": e2e[0]["images_per_s"],
                                "dataloader_images_per_s": e2e[1]["images_per_s"],
                                "ratio": round(e2e[0]["images_per_s"] / e2e[1]["images_per_s"], 2),
                                "utilization_device": e2e[0]["utilization"],
                                "utilization_dataloader": e2e[1]["utilization"]}}


# ------------------------------------------------------------------------------------------ main
def run_section(device: torch.device, plan, chips: dict[int, torch.Tensor], steps: int, warmup: int) -> list[dict]:
    rows = []
    for backbone, size, bs in plan:
        r = measure_training(backbone, size, bs, chips[size], device, steps=steps, warmup=warmup)
        rows.append(r)
        print(f"  {device.type:4s} {backbone:9s} {size:3d} px  batch {bs:4d}  {r['images_per_s']:8.1f} img/s  "
              f"util {r['utilization']['mean_util_pct']}%", flush=True)
    return rows


NAMES = {"small_cnn": "small CNN", "resnet18": "ResNet-18", "resnet50": "ResNet-50"}


def doc_tables(result: dict) -> dict[str, str]:
    """docs/training.md's throughput tables (tools/gen_docs.py fills them from the committed JSON)."""
    load = (result.get("machine") or {}).get("load_avg")
    rows = list(result.get("cpu") or []) + list((result.get("gpu") or {}).get("rows") or [])
    main = markdown_table(["device", "backbone", "px", "batch", "images/s", "busy"],
                          ([r["device"], NAMES.get(r["backbone"], r["backbone"]), r["size"], r["batch_size"],
                            f"{r['images_per_s']:,.1f}", f"{r['utilization']['mean_util_pct']:.0f}%"] for r in rows))
    comps = [("augmentation only, 64 px", result.get("augment_ratio")),
             ("augmentation only, 224 px", result.get("augment_ratio_224")),
             ("training the small CNN end to end, 64 px", result.get("train_ratio"))]
    ratio = markdown_table(["comparison (CPU)", "batched on-device img/s", "DataLoader workers img/s", "ratio"],
                           ([name, f"{r['device_batched_images_per_s']:,.1f}", f"{r['dataloader_images_per_s']:,.1f}",
                             f"**{r['ratio']:.1f}x**"] for name, r in comps if r))
    when = (f"(commit `{(result.get('commit') or '?')[:10]}`" + (f", load average {load[0]:.1f}" if load else "") +
            f", whole run {result.get('wall_s', 0) / 60:.1f} min; GPU rows: "
            f"{'measured' if result.get('gpu') else 'none, no GPU in this run'})")
    return {"main": f"{main}\n\n{when}", "augment": ratio}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small CNN, tiny batches")
    ap.add_argument("--steps", type=int, help="timed steps per measurement")
    ap.add_argument("--gpu-only", action="store_true", help="skip the CPU sections (a lent GPU machine's time is short)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/ssl_throughput[_quick].json)")
    args = ap.parse_args(argv)
    quick = args.quick
    if args.gpu_only and not torch.cuda.is_available():
        ap.error("--gpu-only needs a CUDA device; run without it on the CPU")
    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="ssl-throughput-")
    ws = ucmerced_workspace(Path(tmp.name), 2 if quick else None, 8 if quick else None)
    chips = {s: load_chips(ws, size=s, progress=False, cache=False) for s in (64, 224)}
    cpu = torch.device("cpu")
    print(f"{len(ws)} UC Merced chips; torch threads {torch.get_num_threads()}; cuda {torch.cuda.is_available()}",
          flush=True)

    cpu_rows, aug_ratio, aug_224, train_ratio = [], None, None, None
    if not args.gpu_only:
        steps = args.steps or (1 if quick else 3)
        cpu_rows = run_section(cpu, QUICK_PLAN if quick else CPU_PLAN, chips, steps, 1)

        bs64, nb = (8, 1) if quick else (256, 4)
        aug_ratio = measure_augment(chips[64], 64, bs64, nb, cpu)
        aug_224 = measure_augment(chips[224], 224, 4 if quick else 64, nb, cpu)
        print(f"  augmentation only, 64 px: batched {aug_ratio['device_batched_images_per_s']} img/s vs DataLoader "
              f"{aug_ratio['dataloader_images_per_s']} img/s -> x{aug_ratio['ratio']}", flush=True)
        print(f"  augmentation only, 224 px: batched {aug_224['device_batched_images_per_s']} img/s vs DataLoader "
              f"{aug_224['dataloader_images_per_s']} img/s -> x{aug_224['ratio']}", flush=True)
        e2e_bs = 8 if quick else 256
        e2e = [measure_training("small_cnn", 64, e2e_bs, chips[64], cpu, pipeline=p, steps=steps) for p in ("device", "dataloader")]
        train_ratio = {"backbone": "small_cnn", "size": 64, "batch_size": e2e_bs, "device": "cpu",
                       "device_batched_images_per_s": e2e[0]["images_per_s"], "dataloader_images_per_s": e2e[1]["images_per_s"],
                       "ratio": round(e2e[0]["images_per_s"] / e2e[1]["images_per_s"], 2)}
        print(f"  training small_cnn 64 px: batched aug {train_ratio['device_batched_images_per_s']} img/s vs DataLoader "
              f"{train_ratio['dataloader_images_per_s']} img/s -> x{train_ratio['ratio']}", flush=True)

    gpu = None
    if torch.cuda.is_available():
        gpu = gpu_section(torch.device("cuda"), chips, quick, args.steps)
    elif quick:
        # no GPU here: run the GPU section's code on the CPU with tiny sizes so it cannot rot
        dry = gpu_section(cpu, chips, True, 1)
        print(f"  GPU section dry run on the CPU: {len(dry['rows'])} rows, sampler {dry['rows'][0]['utilization']['source']}")

    print("\n" + markdown_table(["device", "backbone", "px", "batch", "images/s", "utilisation %"],
                                 ([r["device"], r["backbone"], r["size"], r["batch_size"], r["images_per_s"],
                                   r["utilization"]["mean_util_pct"]] for r in cpu_rows + (gpu["rows"] if gpu else []))))
    comparisons = []
    if not args.gpu_only:
        comparisons += [("augmentation only, 64 px (cpu)", aug_ratio), ("augmentation only, 224 px (cpu)", aug_224),
                        ("training small_cnn, 64 px (cpu)", train_ratio)]
    if gpu is not None:
        t = gpu["train_ratio_224"]
        comparisons += [(f"augmentation only, 224 px ({gpu['name']})", gpu["augment_224"]),
                        (f"training {t['backbone']}, 224 px ({gpu['name']})", t)]
    print("\n" + markdown_table(["comparison", "batched on-device aug img/s", "DataLoader workers img/s", "ratio"],
                                 ([name, r["device_batched_images_per_s"], r["dataloader_images_per_s"], r["ratio"]]
                                  for name, r in comparisons)))
    if gpu is None:
        print("\nno CUDA device here: the GPU section (same functions, bf16, NVML utilisation) did not run")

    result = {"benchmark": "ssl_throughput", "quick": quick, "gpu_only": args.gpu_only, "cpu": cpu_rows, "augment_ratio": aug_ratio,
              "augment_ratio_224": aug_224, "train_ratio": train_ratio, "gpu": gpu,
              "seconds": round(time.perf_counter() - t_start, 1)}
    out = Path(args.out or RESULTS / f"ssl_throughput{'_quick' if quick else ''}{'_gpu' if args.gpu_only else ''}.json")
    write_results(out, result, seeds=[0], started=t_start)
    print(f"wrote {out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
