"""Self-supervised training (SimCLR, SimSiam, BYOL via lightly) on a workspace's unlabeled chips.

Chips are decoded once (uint8, cached in RAM, or on the GPU when it fits), views are made by
`augment.SatelliteAugment` on the training device, and every epoch ends with an atomic
checkpoint, so `resume=True` continues exactly where an interrupted run stopped.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .atomic import atomic_path, write_json
from .augment import AugmentConfig, SatelliteAugment, channel_stats
from .data import check_ids, fits_in_memory, load_chips, stream_loader
from .errors import CuratorError
from .models import (BACKBONES, METHODS, MIN_IMAGE_SIZE, Encoder, SSLModel, autocast, build_backbone, encode,
                     resolve_device)

CHECKPOINT = "checkpoint.pt"
ENCODER = "encoder.pt"
FORMAT = "curator-ssl-checkpoint"
ENCODER_FORMAT = "curator-encoder"
OPTIMIZERS = ("adamw", "sgd")
# Per-method default optimizer: SimSiam's kNN accuracy on UC Merced kept falling under AdamW
# (dimensional collapse) but rose with SGD + momentum, as in its paper (benchmarks/ssl_quality.py).
DEFAULT_OPTIMIZER = {"simclr": "adamw", "simsiam": "sgd", "byol": "adamw"}
# Base learning rates at batch size 256: AdamW scaled by sqrt(batch/256), SGD linearly. SGD's is
# 4x SimSiam's paper value because these runs are tens of epochs, not hundreds.
BASE_LR = {"adamw": 2e-3, "sgd": 0.2}
BASE_WD = {"adamw": 1e-4, "sgd": 5e-4}
# Settings that change the optimisation: a resumed run must match them exactly.
RESUME_KEYS = ("method", "backbone", "image_size", "batch_size", "lr", "weight_decay", "optimizer", "temperature",
               "warmup", "accumulate", "seed", "weights", "augment", "ids_digest", "max_steps", "max_seconds")


def train_ssl(ws, run: str = "simclr-small", method: str = "simclr", backbone: str = "small_cnn",
              image_size: int = 64, epochs: int = 20, batch_size: int | None = None, lr: float | None = None,
              weight_decay: float | None = None, optimizer: str | None = None, temperature: float = 0.2,
              warmup: float = 1.0, ids: Sequence[int] | np.ndarray | None = None, device: str = "auto",
              amp: bool = True, channels_last: bool = True, compile: bool | str = False, accumulate: int = 1,
              resume: bool = True, seed: int = 0, weights: str | None = None,
              augment: AugmentConfig | Mapping[str, Any] | None = None, workers: int | None = None,
              knn: bool = True, knn_k: int = 20, progress: bool = True,
              on_epoch: Callable[[dict[str, Any]], None] | None = None, max_steps: int | None = None,
              max_seconds: float | None = None) -> dict[str, Any]:
    """Train `backbone` with `method` on the chips `ids` (default: all) and return a run summary.

    `batch_size=None` is 256 on a GPU and 64 on the CPU (more optimizer steps for the same
    compute, which matters in short CPU runs); `lr=None` scales BASE_LR with the effective batch
    (square root for AdamW, linear for SGD); `optimizer=None` is AdamW for SimCLR and BYOL and
    SGD with momentum for SimSiam; `warmup` is in epochs;
    `compile=True` (or a backend name) wraps the model in torch.compile. With `resume=True` a run
    continues from its last checkpoint and a finished run returns at once; `resume=False` starts
    over (the old checkpoint is replaced only when the new run's first epoch is saved).

    A budget ends the run early with the learning-rate schedule fitted to it: `max_steps` caps the
    optimizer steps (the cosine runs over min(max_steps, epochs x steps per epoch)); with
    `max_seconds` of training time the schedule follows the larger of the step and the time
    fractions, so the step that exhausts the budget is the schedule's last. Either way the last
    checkpoint holds a finished encoder, and resuming a finished run returns at once.
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)
    run_dir = ws.model_dir(run)
    ckpt_path = run_dir / CHECKPOINT
    state = _read(ckpt_path, FORMAT) if resume and ckpt_path.exists() else None
    if batch_size is None:  # a resumed run keeps its batch size even on another device
        batch_size = state["config"]["batch_size"] if state else (256 if dev.type == "cuda" else 64)
    if optimizer is None:
        optimizer = DEFAULT_OPTIMIZER.get(method, "adamw")
    _validate(method, backbone, image_size, epochs, batch_size, optimizer, accumulate, warmup, temperature)
    _validate_budget(max_steps, max_seconds)

    if state is not None and ids is None:
        ids_arr = check_ids(ws, state["ids"].numpy())  # resume trains on the chips it started with
    else:
        ids_arr = check_ids(ws, ids)
    if len(ids_arr) < 2:
        raise CuratorError(f"self-supervised training needs at least 2 chips, got {len(ids_arr)}",
                           "ingest more chips or pass more ids")
    bs = min(int(batch_size), len(ids_arr))
    batches_per_epoch = (len(ids_arr) // bs) // accumulate * accumulate
    if batches_per_epoch == 0:
        raise CuratorError(f"accumulate={accumulate} needs {accumulate * bs} chips per epoch but only {len(ids_arr)} "
                           "are given", "lower accumulate or batch_size")
    steps_per_epoch = batches_per_epoch // accumulate
    aug_cfg = augment if isinstance(augment, AugmentConfig) else AugmentConfig.from_dict(augment)
    if lr is None:
        scale = bs * accumulate / 256
        lr = BASE_LR[optimizer] * (math.sqrt(scale) if optimizer == "adamw" else scale)
    lr = float(lr)
    config: dict[str, Any] = {
        "format": FORMAT, "run": run, "method": method, "backbone": backbone, "image_size": int(image_size),
        "epochs": int(epochs), "batch_size": bs, "lr": lr,
        "weight_decay": float(weight_decay if weight_decay is not None else BASE_WD[optimizer]),
        "optimizer": optimizer, "temperature": float(temperature), "warmup": float(warmup),
        "accumulate": int(accumulate), "seed": int(seed), "weights": weights, "augment": aug_cfg.to_dict(),
        "n_train": int(len(ids_arr)), "ids_digest": _digest(ids_arr), "steps_per_epoch": steps_per_epoch,
        "max_steps": None if max_steps is None else int(max_steps),
        "max_seconds": None if max_seconds is None else float(max_seconds), "versions": _versions(),
    }

    if state is not None:
        old = state["config"]
        diffs = {k: (old.get(k), config[k]) for k in RESUME_KEYS if old.get(k) != config[k]}
        if diffs:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in diffs.items()))
            raise CuratorError(f"run {run!r} exists with different settings ({listed})",
                               "pass resume=False to start it over, or choose a new run name")
        config.update(mean=old["mean"], std=old["std"], dim=old["dim"], created=old["created"])
        if state["epoch"] >= epochs or state.get("finished"):
            return _summary(ws, run, config, state["history"], state["epoch"], dev, t_start, skipped=True,
                            stopped=state.get("finished"))

    # ---------------------------------------------------------------- data
    cached = fits_in_memory(len(ws), image_size)
    images = load_chips(ws, ids_arr, image_size, workers=workers, progress="decode chips" if progress else False) \
        if cached else None
    if state is None:
        sample = images if images is not None else load_chips(
            ws, ids_arr[np.random.default_rng(seed).permutation(len(ids_arr))[:20000]], image_size,
            workers=workers, progress=False, cache=False)
        config["mean"], config["std"] = channel_stats(sample, seed=seed)
        config["created"] = _now()

    # ---------------------------------------------------------------- model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net, dim = build_backbone(backbone, weights, progress=progress)
        encoder = Encoder(net, dim, config["mean"], config["std"], image_size, backbone)
        model = SSLModel(method, encoder, temperature=temperature)
    config["dim"] = dim
    if state is not None:
        _load_state(model, state["model"], ckpt_path)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, optimizer, lr, config["weight_decay"])
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    fn = _compiled(model, compile)
    write_json(run_dir / "config.json", {**config, "device": str(dev), "amp": bool(amp and dev.type == "cuda"),
                                         "channels_last": channels_last, "compile": compile})

    monitor = _Monitor.create(ws, ids_arr, images, image_size, seed, knn_k, dev, amp, workers) if knn else None
    history: list[dict[str, Any]] = list(state["history"]) if state else []
    step_losses: list[float] = list(state["step_losses"]) if state else []
    step = int(state["step"]) if state else 0
    start_epoch = int(state["epoch"]) if state else 0
    total_steps = min(steps_per_epoch * epochs, int(max_steps)) if max_steps else steps_per_epoch * epochs
    warmup_steps = min(int(round(warmup * steps_per_epoch)), total_steps - 1)
    budget = _Budget(total_steps, max_seconds, float(state.get("train_seconds", 0.0)) if state else 0.0,
                     capped=total_steps < steps_per_epoch * epochs)
    if monitor is not None and not history:
        history.append({"epoch": 0, "loss": None, "knn_top1": monitor.evaluate(model.encoder)})

    from lightly.utils.scheduler import cosine_schedule, cosine_warmup_schedule
    from .progress import progress_bar as tqdm

    aug = SatelliteAugment(image_size, aug_cfg)
    resident = _to_device(images, dev) if images is not None else None
    bar = tqdm(total=(epochs - start_epoch) * batches_per_epoch, desc=f"train {run}", unit="batch",
               disable=not progress, leave=False)
    try:
        for epoch in range(start_epoch, epochs):
            if budget.finished(step):
                break
            epoch_seed = int(seed) * 1_000_003 + epoch
            g_aug = torch.Generator(device=dev).manual_seed(epoch_seed + 1)
            model.train()
            t0 = time.perf_counter()
            losses: list[torch.Tensor] = []
            for b, x in enumerate(_batches(ws, ids_arr, resident, image_size, bs, batches_per_epoch, epoch_seed,
                                           dev, workers)):
                v0, v1 = aug(x, g_aug), aug(x, g_aug)
                if channels_last:
                    v0 = v0.contiguous(memory_format=torch.channels_last)
                    v1 = v1.contiguous(memory_format=torch.channels_last)
                with autocast(dev, amp):
                    loss = fn(v0, v1)
                (loss / accumulate).backward()
                losses.append(loss.detach().float())
                if (b + 1) % accumulate == 0:
                    at = budget.schedule_step(step)
                    cur_lr = cosine_warmup_schedule(at, total_steps, lr, lr * 1e-3, warmup_steps, 0.0)
                    for group in opt.param_groups:
                        group["lr"] = cur_lr
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    if method == "byol":
                        model.momentum_update(cosine_schedule(at, total_steps, 0.99, 1.0))
                    step += 1
                    budget.stepped()
                    if budget.finished(step):
                        bar.update(1)
                        break
                bar.update(1)
                if b % 10 == 9 or b == batches_per_epoch - 1:
                    recent = float(torch.stack(losses[-10:]).mean())
                    _check_finite(recent, run, epoch, b)
                    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{recent:.4f}",
                                    img_s=f"{(b + 1) * bs / (time.perf_counter() - t0):.0f}")
            epoch_losses = torch.stack(losses).cpu().tolist()
            seconds = time.perf_counter() - t0
            done = len(epoch_losses)
            _check_finite(sum(epoch_losses), run, epoch, len(epoch_losses) - 1)
            step_losses += epoch_losses
            entry = {"epoch": epoch + 1, "loss": float(np.mean(epoch_losses)), "lr": float(cur_lr), "step": step,
                     "seconds": round(seconds, 3), "images_per_s": round(done * bs / seconds, 1)}
            finished = budget.finished(step)
            if finished:
                entry["stopped"] = finished
            if monitor is not None:
                entry["knn_top1"] = monitor.evaluate(model.encoder)
            history.append(entry)
            _save(run_dir, config, model, opt, epoch + 1, step, history, step_losses, ids_arr,
                  extra={"train_seconds": budget.seconds(), "finished": finished})
            ws.record("runs", run, _run_record(config, history, epoch + 1, dev))
            if on_epoch is not None:
                on_epoch(dict(entry))
            if finished:
                break
    finally:
        bar.close()
    last_epoch = history[-1]["epoch"] if history and history[-1].get("loss") is not None else epochs
    return _summary(ws, run, config, history, last_epoch, dev, t_start, stopped=budget.finished(step))


# ------------------------------------------------------------------------------------------ loading
def load_model(ws, run: str, device: str | torch.device = "cpu") -> Encoder:
    """The trained encoder of `run` in eval mode, with its stored normalization and image size."""
    run_dir = ws.model_dir(run)
    path = run_dir / ENCODER
    if not path.exists():
        runs = sorted(p.parent.name for p in (ws.root / "models").glob(f"*/{ENCODER}"))
        raise CuratorError(f"no trained model {run!r} in {ws.root} (trained runs: {runs or 'none'})",
                           f"train one first: train_ssl(ws, run={run!r}) or `curator train -w {ws.root} --run {run}`")
    payload = _read(path, ENCODER_FORMAT)
    cfg = payload["config"]
    net, dim = build_backbone(cfg["backbone"])
    encoder = Encoder(net, dim, cfg["mean"], cfg["std"], cfg["image_size"], cfg["backbone"])
    _load_state(encoder, payload["state"], path)
    encoder.run = run
    encoder.epoch = int(payload["epoch"])
    encoder.config = cfg
    encoder.fingerprint = f"{run}:{cfg.get('created')}:{payload['epoch']}:{payload['step']}"
    return encoder.to(resolve_device(device)).eval()


def read_metrics(ws, run: str) -> dict[str, Any]:
    """The run's metrics.json (loss and kNN history), for notebooks and the CLI."""
    import json

    path = ws.model_dir(run) / "metrics.json"
    if not path.exists():
        raise CuratorError(f"run {run!r} has no metrics yet ({path})", "train it first with train_ssl")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------ helpers
def _validate(method, backbone, image_size, epochs, batch_size, optimizer, accumulate, warmup, temperature) -> None:
    if method not in METHODS:
        raise CuratorError(f"unknown SSL method {method!r}", f"use one of {', '.join(METHODS)}")
    if backbone not in BACKBONES:
        raise CuratorError(f"unknown backbone {backbone!r}", f"use one of {', '.join(BACKBONES)}")
    if optimizer not in OPTIMIZERS:
        raise CuratorError(f"unknown optimizer {optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
    if int(image_size) < MIN_IMAGE_SIZE[backbone]:
        raise CuratorError(f"image_size {image_size} is too small for {backbone}",
                           f"use image_size >= {MIN_IMAGE_SIZE[backbone]}")
    for name, v, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("accumulate", accumulate, 1)):
        if int(v) != v or v < lo:
            raise CuratorError(f"{name}={v!r} must be an integer >= {lo}", f"pass {name}={lo} or more")
    if warmup < 0 or temperature <= 0:
        raise CuratorError(f"warmup={warmup} must be >= 0 and temperature={temperature} > 0", "use e.g. warmup=1, temperature=0.2")


def _validate_budget(max_steps: int | None, max_seconds: float | None) -> None:
    if max_steps is not None and (int(max_steps) != max_steps or max_steps < 1):
        raise CuratorError(f"max_steps={max_steps!r} must be an integer >= 1", "pass e.g. max_steps=500, or None")
    if max_seconds is not None and not (math.isfinite(float(max_seconds)) and float(max_seconds) > 0):
        raise CuratorError(f"max_seconds={max_seconds!r} must be a positive number", "pass e.g. max_seconds=600")


class _Budget:
    """Where the learning-rate schedule stands under a step and/or time budget, and whether it is spent."""

    def __init__(self, total_steps: int, max_seconds: float | None, seconds_before: float, capped: bool = True):
        self.total, self.max_seconds, self.before = total_steps, max_seconds, seconds_before
        self.capped = capped  # max_steps ends the run before its epochs do; otherwise the epochs end it
        self.start = time.perf_counter()
        self.steps_here = 0
        self.out_of_time = False

    def seconds(self) -> float:
        """Training seconds so far, across resumed sessions."""
        return self.before + time.perf_counter() - self.start

    def _step_seconds(self) -> float:
        return (time.perf_counter() - self.start) / self.steps_here if self.steps_here else 0.0

    def schedule_step(self, step: int) -> int:
        """The schedule position of optimizer step `step`: the step itself, or further along when time runs
        faster than steps; the last step the time budget allows is the schedule's last (total - 1)."""
        if self.max_seconds is None:
            return step
        if self.seconds() + self._step_seconds() >= self.max_seconds:
            self.out_of_time = True  # this step is the last: it runs at the schedule's end
            return self.total - 1
        return min(self.total - 1, max(step, int(self.seconds() / self.max_seconds * self.total)))

    def stepped(self) -> None:
        self.steps_here += 1

    def finished(self, step: int) -> str | None:
        """Why training is over before its epochs end ('max_steps' / 'max_seconds'), else None."""
        if step >= self.total:
            return "max_steps" if self.total and self.capped else None
        return "max_seconds" if self.out_of_time else None


def _read(path: Path, fmt: str) -> dict[str, Any]:
    """torch.load with weights_only; damage of any kind becomes one clear CuratorError naming the file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle, EOF and runtime errors all mean "damaged"
        raise CuratorError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {str(e)[:200]})",
                           "delete it and train again (resume=False), or restore it from a backup") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CuratorError(f"{path} is not a curator_widgets {fmt} file",
                           "point at a run trained by train_ssl, or delete the file and train again")
    return payload


def _load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln or "Missing" in ln
                      or "Unexpected" in ln), str(e)[:200])
        raise CuratorError(f"checkpoint {path} does not match its backbone/method (dimension mismatch: {first})",
                           "the file belongs to another configuration; retrain with resume=False or use its run") from None


def _optimizer(model: SSLModel, name: str, lr: float, wd: float) -> torch.optim.Optimizer:
    from lightly.models.utils import get_weight_decay_parameters

    decay, no_decay = get_weight_decay_parameters(model.trainable_modules())
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=lr)


def _compiled(model: SSLModel, compile: bool | str) -> torch.nn.Module:
    if not compile:
        return model
    try:
        return torch.compile(model, backend=compile if isinstance(compile, str) else "inductor")
    except Exception as e:
        raise CuratorError(f"torch.compile failed ({type(e).__name__}: {e})", "train with compile=False") from None


def _to_device(images: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Keep uint8 chips on the GPU when they take < 1/4 of its free memory, so batches never wait."""
    if dev.type != "cuda":
        return images
    free, _ = torch.cuda.mem_get_info(dev)
    return images.to(dev) if images.numel() < free // 4 else images.pin_memory()


def _batches(ws, ids: np.ndarray, images: torch.Tensor | None, size: int, bs: int, n_batches: int, seed: int,
             dev: torch.device, workers: int | None) -> Iterator[torch.Tensor]:
    """One epoch of uint8 batches on `dev`: from the in-memory cache, or streamed by DataLoader workers."""
    if images is not None:
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n_batches * bs]
        perm = perm.to(images.device)
        for b in range(n_batches):
            yield images[perm[b * bs:(b + 1) * bs]].to(dev, non_blocking=True)
        return
    loader = stream_loader(ws, ids, size, bs, shuffle=True, seed=seed, workers=workers,
                           pin_memory=dev.type == "cuda", drop_last=True)
    for b, (x, pos, errs) in enumerate(loader):
        if b >= n_batches:
            break
        bad = [(int(ids[int(p)]), e) for p, e in zip(pos, errs) if e]
        if bad:
            raise CuratorError(f"chip {bad[0][0]} cannot be decoded: {bad[0][1]}",
                               "replace the file, or train without it via ids=...")
        yield x.to(dev, non_blocking=True)


def _check_finite(value: float, run: str, epoch: int, batch: int) -> None:
    if not math.isfinite(value):
        raise CuratorError(f"training {run!r} diverged: the loss is {value} at epoch {epoch + 1}, batch {batch + 1}",
                           "lower lr (or use amp=False); the last good checkpoint is kept and resume=True restarts from it")


class _Monitor:
    """kNN top-1 on a held-out split of the labelled training chips (labels never reach SSL)."""

    def __init__(self, ref: torch.Tensor, ref_y: np.ndarray, qry: torch.Tensor, qry_y: np.ndarray, k: int,
                 dev: torch.device, amp: bool):
        self.ref, self.ref_y, self.qry, self.qry_y, self.k, self.dev, self.amp = ref, ref_y, qry, qry_y, k, dev, amp

    @classmethod
    def create(cls, ws, ids: np.ndarray, images: torch.Tensor | None, size: int, seed: int, k: int,
               dev: torch.device, amp: bool, workers: int | None) -> "_Monitor | None":
        from .evaluation import holdout_split

        ids = np.unique(ids)  # a chip repeated in ids (oversampling) must not be its own neighbour
        labels = ws.manifest["label"].to_numpy()[ids]
        split = holdout_split(labels, seed=seed)
        if split is None:
            return None
        ref_pos, q_pos, y, _ = split

        def take(pos: np.ndarray) -> torch.Tensor:
            return load_chips(ws, ids[pos], size, workers=workers, progress=False, cache=images is not None)

        return cls(take(ref_pos), y[ref_pos], take(q_pos), y[q_pos], k, dev, amp)

    def evaluate(self, encoder: Encoder) -> float:
        from .evaluation import knn_top1

        ref = encode(encoder, self.ref, device=self.dev, amp=self.amp)
        qry = encode(encoder, self.qry, device=self.dev, amp=self.amp)
        return round(knn_top1(ref.numpy(), self.ref_y, qry.numpy(), self.qry_y, k=self.k), 4)


def _save(run_dir: Path, config: dict, model: SSLModel, opt: torch.optim.Optimizer, epoch: int, step: int,
          history: list, step_losses: list, ids: np.ndarray, extra: dict[str, Any] | None = None) -> None:
    """Checkpoint (full state, for resume) and encoder (for embedding), both atomic, then metrics and curve."""
    _torch_save(run_dir / CHECKPOINT, {"format": FORMAT, "version": 1, "config": config, "epoch": epoch, "step": step,
                                       "model": _cpu_state(model), "optimizer": opt.state_dict(), "history": history,
                                       "step_losses": step_losses, "ids": torch.from_numpy(ids), **(extra or {})})
    _torch_save(run_dir / ENCODER, {"format": ENCODER_FORMAT, "version": 1, "config": config, "epoch": epoch,
                                    "step": step, "state": _cpu_state(model.encoder)})
    write_json(run_dir / "metrics.json", {"run": config["run"], "epoch": epoch, "step": step, "history": history,
                                          "step_losses": [round(v, 6) for v in step_losses]})
    plot_curve(run_dir / "curve.png", history, step_losses, config.get("steps_per_epoch", 1) * config["accumulate"],
               title=f"{config['run']}: {config['method']} / {config['backbone']}")


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in module.state_dict().items()}


def _torch_save(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())


def plot_curve(path: Path, history: list[dict], step_losses: list[float], batches_per_epoch: int, title: str = "") -> None:
    """Loss per batch and per epoch, plus the kNN monitor when there is one, as a PNG (atomic)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), dpi=110)
    ax = fig.add_subplot()
    if step_losses:
        x = np.arange(1, len(step_losses) + 1) / max(1, batches_per_epoch)
        ax.plot(x, step_losses, color="#9ab", lw=0.7, label="batch loss")
    ep = [h for h in history if h.get("loss") is not None]
    ax.plot([h["epoch"] for h in ep], [h["loss"] for h in ep], "o-", color="#1f4e79", ms=3, label="epoch loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("SSL loss")
    knn = [h for h in history if h.get("knn_top1") is not None]
    if knn:
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in knn], [h["knn_top1"] for h in knn], "s--", color="#c0504d", ms=3,
                 label="kNN top-1 (held out)")
        ax2.set_ylabel("kNN top-1")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def _run_record(config: dict, history: list, epoch: int, dev: torch.device) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {"method": config["method"], "backbone": config["backbone"], "image_size": config["image_size"],
            "epochs": config["epochs"], "epoch": epoch, "loss": last.get("loss"), "knn_top1": last.get("knn_top1"),
            "n_train": config["n_train"], "dim": config.get("dim"), "device": str(dev), "updated": _now()}


def _summary(ws, run: str, config: dict, history: list, epoch: int, dev: torch.device, t_start: float,
             skipped: bool = False, stopped: str | None = None) -> dict[str, Any]:
    trained = [h for h in history if h.get("loss") is not None]
    last = trained[-1] if trained else {}
    knn = [h["knn_top1"] for h in history if h.get("knn_top1") is not None]
    run_dir = ws.model_dir(run)
    return {"run": run, "method": config["method"], "backbone": config["backbone"], "epochs": config["epochs"],
            "epoch": epoch, "dim": config.get("dim"), "n_train": config["n_train"], "loss": last.get("loss"),
            "knn_top1": knn[-1] if knn else None, "knn_top1_initial": knn[0] if knn else None,
            "images_per_s": last.get("images_per_s"), "device": str(dev), "skipped": skipped, "stopped": stopped,
            "step": last.get("step"),
            "seconds": round(time.perf_counter() - t_start, 2), "model_dir": str(run_dir),
            "checkpoint": str(run_dir / CHECKPOINT), "history": history}


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import lightly

    return {"torch": str(torch.__version__), "lightly": str(getattr(lightly, "__version__", "?"))}
