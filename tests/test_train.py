"""Self-supervised training: methods, backbones, augmentations, checkpoints/resume and their errors.

Runs on a 24-chip UC Merced subset (3 classes, real aerial imagery) at 32 px so every case
takes a couple of steps on CPU.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from curator_widgets import CuratorError, FolderSource, Workspace
from curator_widgets.augment import AugmentConfig, SatelliteAugment, channel_stats
from curator_widgets.models import SSLModel, build_backbone, resolve_device
from curator_widgets.paths import shared_data_dir
from curator_widgets.train import load_model, read_metrics, train_ssl
from helpers import load_bench

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
FAST = dict(image_size=SIZE, batch_size=12, progress=False, workers=0)


def ucm_subset(root: Path, classes: int = 3, per_class: int = 8) -> Path:
    """Symlinks to a few real UC Merced images, class folders kept (labels for the kNN monitor)."""
    src = shared_data_dir() / "ucmerced"
    for cls in sorted(p for p in src.iterdir() if p.is_dir())[:classes]:
        (root / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:per_class]:
            (root / cls.name / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def ucm_ws(tmp_path_factory) -> Workspace:
    base = tmp_path_factory.mktemp("ssl")
    ws = Workspace.create(base / "ws")
    ws.ingest(FolderSource(ucm_subset(base / "ucm")), size=None, progress=False)
    return ws


# ------------------------------------------------------------------------------------------ methods
@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_each_method_two_steps_finite_and_changing(ucm_ws, method):
    info = train_ssl(ucm_ws, run=f"m-{method}", method=method, epochs=1, **FAST)
    metrics = read_metrics(ucm_ws, f"m-{method}")
    losses = metrics["step_losses"]
    assert len(losses) == 2 and info["epoch"] == 1
    assert all(math.isfinite(v) for v in losses)
    assert losses[0] != losses[1]
    # the kNN monitor ran on the labelled subset, before training (epoch 0) and after epoch 1
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert 0.0 <= info["knn_top1"] <= 1.0 and info["knn_top1_initial"] is not None
    run_dir = ucm_ws.model_dir(f"m-{method}")
    assert (run_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["method"] == method and len(cfg["mean"]) == 3 and all(s > 0 for s in cfg["std"])
    assert ucm_ws.meta["runs"][f"m-{method}"]["epoch"] == 1


def test_resnet18_trains_and_loads(ucm_ws):
    info = train_ssl(ucm_ws, run="b-resnet18", method="simsiam", backbone="resnet18", epochs=1, ids=range(8),
                     knn=False, **{**FAST, "batch_size": 4})
    assert info["dim"] == 512 and info["n_train"] == 8 and math.isfinite(info["loss"])
    model = load_model(ucm_ws, "b-resnet18")
    assert not model.training and model.dim == 512 and model.image_size == SIZE
    with torch.no_grad():
        assert model(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8)).shape == (2, 512)


def test_resnet50_step_on_cpu():
    from curator_widgets.models import Encoder

    net, dim = build_backbone("resnet50")
    model = SSLModel("byol", Encoder(net, dim, image_size=SIZE, name="resnet50"))
    x = torch.rand(4, 3, SIZE, SIZE)
    loss = model(x, x.flip(3))
    loss.backward()
    assert dim == 2048 and math.isfinite(float(loss.detach()))
    assert model.encoder.backbone.conv1.weight.grad is not None


def test_ids_subset_and_accumulation(ucm_ws):
    info = train_ssl(ucm_ws, run="subset", epochs=1, ids=np.arange(0, 24, 2), accumulate=2, knn=False,
                     **{**FAST, "batch_size": 6})
    assert info["n_train"] == 12
    m = read_metrics(ucm_ws, "subset")
    assert len(m["step_losses"]) == 2 and m["history"][-1]["step"] == 1  # 2 batches -> 1 optimizer step


def test_compile_path_runs_on_cpu(ucm_ws):
    # the "eager" backend goes through torch.compile/dynamo without needing a C++ toolchain
    info = train_ssl(ucm_ws, run="compiled", epochs=1, compile="eager", knn=False, **FAST)
    assert math.isfinite(info["loss"])


# ------------------------------------------------------------------------------------------ resume
def test_resume_reproduces_the_next_step(ucm_ws):
    args = dict(method="byol", epochs=2, knn=False, seed=7, **FAST)
    train_ssl(ucm_ws, run="straight", **args)

    class Crash(Exception):
        pass

    def crash_after_first(entry):
        if entry["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        train_ssl(ucm_ws, run="interrupted", on_epoch=crash_after_first, **args)
    assert read_metrics(ucm_ws, "interrupted")["epoch"] == 1
    resumed = train_ssl(ucm_ws, run="interrupted", **args)
    assert resumed["epoch"] == 2 and not resumed["skipped"]

    a, b = read_metrics(ucm_ws, "straight"), read_metrics(ucm_ws, "interrupted")
    assert a["step_losses"] == b["step_losses"]  # the steps after the resume are the same steps
    sa, sb = load_model(ucm_ws, "straight").state_dict(), load_model(ucm_ws, "interrupted").state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    again = train_ssl(ucm_ws, run="straight", **args)
    assert again["skipped"] and again["epoch"] == 2


def test_step_budget_ends_the_cosine_schedule_and_resumes_finished(ucm_ws):
    """max_steps=3 of 5 epochs x 2 steps: the third step is the schedule's last (lr at its end value),
    training stops there mid-epoch with a saved encoder, and resuming a finished run returns at once."""
    args = dict(epochs=5, knn=False, seed=3, max_steps=3, **FAST)
    info = train_ssl(ucm_ws, run="budget-steps", **args)
    assert info["stopped"] == "max_steps" and info["step"] == 3 and info["epoch"] == 2
    hist = read_metrics(ucm_ws, "budget-steps")["history"]
    lr = json.loads((ucm_ws.model_dir("budget-steps") / "config.json").read_text())["lr"]
    assert hist[-1]["step"] == 3 and hist[-1]["lr"] == pytest.approx(lr * 1e-3)  # the end of the cosine
    assert hist[0]["lr"] > lr * 0.5  # the first epoch is early in the schedule, not at its end
    assert load_model(ucm_ws, "budget-steps").epoch == 2
    again = train_ssl(ucm_ws, run="budget-steps", **args)
    assert again["skipped"] and again["stopped"] == "max_steps"
    with pytest.raises(CuratorError, match=r"different settings \(max_steps: 3 -> 4\)"):
        train_ssl(ucm_ws, run="budget-steps", **{**args, "max_steps": 4})
    from curator_widgets.cli import main

    assert main(["train", "-w", str(ucm_ws.root), "--run", "budget-cli", "--epochs", "5", "--max-steps", "1",
                 "--batch-size", "12", "--image-size", str(SIZE), "--quiet", "--no-knn"]) == 0
    assert read_metrics(ucm_ws, "budget-cli")["step"] == 1
    with pytest.raises(CuratorError, match="max_steps=0 must be an integer >= 1"):
        train_ssl(ucm_ws, run="budget-bad", **{**args, "max_steps": 0})
    with pytest.raises(CuratorError, match="max_seconds=-1 must be a positive number"):
        train_ssl(ucm_ws, run="budget-bad", **{**args, "max_steps": None, "max_seconds": -1})


def test_time_budget_stops_at_the_end_of_the_schedule(ucm_ws):
    """A time budget shorter than the epochs: the schedule follows the time fraction, so the step that spends the
    budget runs at the schedule's end value and training stops there."""
    info = train_ssl(ucm_ws, run="budget-time", epochs=200, knn=False, max_seconds=3.0, **FAST)
    assert info["stopped"] == "max_seconds" and info["epoch"] < 200
    hist = read_metrics(ucm_ws, "budget-time")["history"]
    lr = json.loads((ucm_ws.model_dir("budget-time") / "config.json").read_text())["lr"]
    assert hist[-1]["lr"] == pytest.approx(lr * 1e-3) and hist[-1]["stopped"] == "max_seconds"
    assert train_ssl(ucm_ws, run="budget-time", epochs=200, knn=False, max_seconds=3.0, **FAST)["skipped"]


def test_resume_with_other_settings_is_refused(ucm_ws):
    train_ssl(ucm_ws, run="settings", epochs=1, knn=False, **FAST)
    with pytest.raises(CuratorError, match=r"exists with different settings \(method: 'simclr' -> 'simsiam';.*optimizer: 'adamw' -> 'sgd'\)") as e:
        train_ssl(ucm_ws, run="settings", method="simsiam", epochs=1, knn=False, **FAST)
    assert "resume=False" in str(e.value)
    info = train_ssl(ucm_ws, run="settings", method="simsiam", epochs=1, knn=False, resume=False, **FAST)
    assert info["method"] == "simsiam"


def test_corrupt_checkpoints_give_clear_errors(ucm_ws):
    train_ssl(ucm_ws, run="corrupt", epochs=1, knn=False, **FAST)
    run_dir = ucm_ws.model_dir("corrupt")
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CuratorError, match=r"checkpoint .*checkpoint\.pt is corrupt or truncated") as e:
        train_ssl(ucm_ws, run="corrupt", epochs=2, knn=False, **FAST)
    assert "resume=False" in str(e.value)
    (run_dir / "encoder.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CuratorError, match=r"encoder\.pt is corrupt or truncated"):
        load_model(ucm_ws, "corrupt")
    torch.save({"something": 1}, run_dir / "encoder.pt")
    with pytest.raises(CuratorError, match="is not a curator_widgets curator-encoder file"):
        load_model(ucm_ws, "corrupt")


def test_dimension_mismatch_in_checkpoint(ucm_ws):
    train_ssl(ucm_ws, run="mismatch", epochs=1, knn=False, **FAST)
    path = ucm_ws.model_dir("mismatch") / "encoder.pt"
    payload = torch.load(path, weights_only=True)
    payload["config"]["backbone"] = "resnet18"  # small-CNN weights under a resnet18 config
    torch.save(payload, path)
    with pytest.raises(CuratorError, match=r"does not match its backbone/method \(dimension mismatch"):
        load_model(ucm_ws, "mismatch")
    w = payload["state"]["backbone.net.0.weight"]
    payload["config"]["backbone"] = "small_cnn"
    payload["state"]["backbone.net.0.weight"] = torch.zeros(w.shape[0] + 1, *w.shape[1:])
    torch.save(payload, path)
    with pytest.raises(CuratorError, match=r"dimension mismatch: size mismatch for backbone\.net\.0\.weight"):
        load_model(ucm_ws, "mismatch")


def test_missing_run_error(ucm_ws):
    with pytest.raises(CuratorError, match=r"no trained model 'nope'.*trained runs:") as e:
        load_model(ucm_ws, "nope")
    assert "curator train" in str(e.value)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs,message", [
    ({"method": "moco"}, "unknown SSL method 'moco'"),
    ({"backbone": "vit"}, "unknown backbone 'vit'"),
    ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
    ({"epochs": 0}, r"epochs=0 must be an integer >= 1"),
    ({"batch_size": 1}, r"batch_size=1 must be an integer >= 2"),
    ({"image_size": 8}, "image_size 8 is too small for small_cnn"),
    ({"ids": [0, 999]}, r"chip ids \[999\] are not in this workspace"),
    ({"ids": [3]}, "needs at least 2 chips"),
    ({"accumulate": 4, "batch_size": 12}, "accumulate=4 needs 48 chips per epoch"),
    ({"augment": {"twirl": 1}}, r"unknown augmentation settings \['twirl'\]"),
    ({"device": "tpu9"}, "unknown device 'tpu9'"),
])
def test_bad_arguments(ucm_ws, kwargs, message):
    args = {**FAST, "epochs": 1, "knn": False, **kwargs}
    with pytest.raises(CuratorError, match=message):
        train_ssl(ucm_ws, run="bad", **args)


def test_cuda_device_resolution():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(CuratorError, match="no CUDA GPU is visible"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_published_weights_only_by_name_and_offline_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CuratorError, match=r"could not download ResNet18_Weights\.IMAGENET1K_V1") as e:
        build_backbone("resnet18", weights="IMAGENET1K_V1", progress=False)
    assert "weights=None" in str(e.value)
    with pytest.raises(CuratorError, match="resnet18 has no published weights named 'SATELLITE'"):
        build_backbone("resnet18", weights="SATELLITE")
    with pytest.raises(CuratorError, match="the small CNN has no published weights"):
        build_backbone("small_cnn", weights="IMAGENET1K_V1")


def test_cli_backbone_choices_are_the_models_backbones():
    """`curator train --backbone` lists the names literally (no torch import to build the CLI): keep them in step."""
    import argparse

    from curator_widgets.commands import train as train_cmd
    from curator_widgets.models import BACKBONES

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    backbone = next(a for a in sub._actions if a.dest == "backbone")
    assert tuple(backbone.choices) == BACKBONES


def test_cifar_stem_keeps_resolution_and_refuses_imagenet_weights(tmp_path):
    """resnet*_cifar: 3x3 stride-1 stem, no max-pool, so a 64 px chip ends in an 8x8 map (ImageNet stem: 2x2)."""
    maps = {}
    for name in ("resnet18", "resnet18_cifar"):
        net, dim = build_backbone(name)
        body = torch.nn.Sequential(*[m for k, m in net.named_children() if k not in ("avgpool", "fc")])
        maps[name] = body(torch.zeros(2, 3, 64, 64)).shape[-2:]
        assert dim == 512 and net(torch.zeros(2, 3, 64, 64)).shape == (2, 512)
    assert tuple(maps["resnet18"]) == (2, 2) and tuple(maps["resnet18_cifar"]) == (8, 8)
    net, dim = build_backbone("resnet50_cifar")
    assert dim == 2048 and net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    with pytest.raises(CuratorError, match="resnet18_cifar has no published weights") as e:
        build_backbone("resnet18_cifar", weights="IMAGENET1K_V1")
    assert "backbone='resnet18'" in e.value.fix


# ------------------------------------------------------------------------------------------ augment
def test_augment_shapes_range_and_determinism():
    x = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    aug = SatelliteAugment(32)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_geometry_is_exactly_a_dihedral_transform():
    """Full-image crops without colour or blur: every view is one of the 8 flips/90-degree rotations."""
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter=0, grayscale=0, blur=0)
    x = torch.rand(16, 3, 8, 8)
    out = SatelliteAugment(8, cfg)(x, torch.Generator().manual_seed(0))
    seen = set()
    for i in range(16):
        variants = [torch.rot90(v, k, dims=(1, 2)) for v in (x[i], x[i].flip(2)) for k in range(4)]
        match = [j for j, v in enumerate(variants) if torch.allclose(out[i], v, atol=1e-5)]
        assert match, f"view {i} is not a flip/rotation of its chip"
        seen.add(match[0])
    assert len(seen) > 2  # rotations and flips both happen


def test_color_and_blur_keep_gray_gray_and_mean():
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter=1.0, brightness=0, contrast=0,
                        saturation=0.5, hue=0.2, grayscale=0, blur=1.0)
    x = torch.full((4, 3, 16, 16), 0.5)
    out = SatelliteAugment(16, cfg)(x, torch.Generator().manual_seed(3))
    assert torch.allclose(out, x, atol=1e-5)  # hue/saturation/blur do not change a flat gray chip


def test_augment_rejects_wrong_shape():
    with pytest.raises(CuratorError, match=r"augmentation expects a batch shaped \[N, 3, H, W\], got \[2, 4, 8, 8\]"):
        SatelliteAugment(8)(torch.zeros(2, 4, 8, 8))


def test_channel_stats_match_numpy():
    x = torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8)
    mean, std = channel_stats(x)
    arr = x.numpy().astype(np.float64) / 255
    assert np.allclose(mean, arr.mean((0, 2, 3)), atol=1e-5)
    assert np.allclose(std, arr.std((0, 2, 3)), atol=1e-5)
    with pytest.raises(CuratorError, match="channel statistics need chips shaped"):
        channel_stats(torch.zeros(0, 3, 4, 4, dtype=torch.uint8))


def test_ssl_model_rejects_unknown_method():
    net, dim = build_backbone("small_cnn")
    from curator_widgets.models import Encoder

    with pytest.raises(CuratorError, match="unknown SSL method 'swav'"):
        SSLModel("swav", Encoder(net, dim))


# ------------------------------------------------------------------------------------------ CLI, demo
def test_cli_train(ucm_ws, capsys):
    from curator_widgets.cli import main

    rc = main(["train", "-w", str(ucm_ws.root), "--run", "cli", "--epochs", "1", "--batch-size", "12",
               "--image-size", str(SIZE), "--quiet", "--no-knn"])
    assert rc == 0
    assert '"run": "cli"' in capsys.readouterr().out
    assert main(["train", "-w", str(ucm_ws.root), "--run", "cli", "--epochs", "1", "--batch-size", "12",
                 "--image-size", str(SIZE), "--quiet", "--no-knn"]) == 0
    assert "already trained for 1 epochs" in capsys.readouterr().out
    rc = main(["train", "-w", str(ucm_ws.root), "--run", "cli2", "--backbone", "small_cnn", "--image-size", "4",
               "--quiet"])
    assert rc == 2 and "image_size 4 is too small" in capsys.readouterr().err


def test_demo_train_and_embed_steps(tmp_path):
    from curator_widgets.demo import STEPS, step_tile

    names = [n for n, _ in STEPS]
    assert names.index("train") == names.index("tile") + 1 and names.index("embed") == names.index("train") + 1
    steps = dict(STEPS)
    ws = Workspace.create(tmp_path / "demo")
    params = {"bbox": (-10.0, 35.0, 10.0, 50.0), "size": 64, "level": 3, "seed": 0, "train_epochs": 1}
    step_tile(ws, params)
    out = steps["train"](ws, params)
    assert out["epoch"] == 1 and math.isfinite(out["loss"])
    emb = steps["embed"](ws, params)
    assert emb["rows"] == len(ws) and emb["dim"] == 256
    again = steps["train"](ws, params)
    assert again["skipped"]


# ------------------------------------------------------------------------------------------ benchmarks
def test_ssl_quality_benchmark_quick(tmp_path):
    out = tmp_path / "q.json"
    assert load_bench("ssl_quality").main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["quick"] and len(res["rows"]) == 2
    for row in res["rows"]:
        for k in ("knn_top1_ssl", "knn_top1_random_init", "knn_top1_raw_pixels"):
            assert 0.0 <= row[k] <= 1.0


def test_ssl_throughput_benchmark_quick(tmp_path):
    out = tmp_path / "t.json"
    bench = load_bench("ssl_throughput")
    assert bench.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["quick"] and res["cpu"] and all(r["images_per_s"] > 0 for r in res["cpu"])
    assert res["augment_ratio"]["ratio"] > 0 and res["train_ratio"]["ratio"] > 0
    if not torch.cuda.is_available():
        # the GPU utilisation sampler's thread runs and degrades cleanly without NVML or nvidia-smi
        with bench.UtilSampler(torch.device("cuda:0"), interval=0.01) as util:
            time.sleep(0.05)
        summary = util.summary()
        assert summary["source"].startswith(("unavailable", "pynvml", "nvidia-smi")) and summary["samples"] >= 0
