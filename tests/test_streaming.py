"""The fast path for images on disk: decode paths, frame cache, device ops, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import load_bundle
from benchmark.imagefiles import (
    RRC_RATIO,
    Augment,
    FrameCache,
    Geometry,
    augmented,
    draw_augment,
    jitter_pil,
    open_rgb,
    rrc_box,
)
from benchmark.streaming import Stream, color_jitter, decode_batch

import layouts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_lt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagenet-lt")
    layouts.write_split_files(root, counts=(6, 3, 2))
    return root


def train_inputs(root: Path, **options):
    return (
        load_bundle("imagenet-lt", {"size": 16, "resize": 21, **options}, root=root)
        .splits["train"]
        .inputs
    )


def collect(stream: Stream, positions, epoch: int) -> torch.Tensor:
    return torch.cat([x.float() for x, _ in stream.batches(positions, epoch)])


def test_predecoded_cache_equals_direct_decoding(tiny_lt: Path) -> None:
    inputs = train_inputs(tiny_lt)
    assert FrameCache.find(inputs) is None
    cache, seconds = FrameCache.build(inputs, workers=2, progress=False)
    assert seconds > 0 and FrameCache.build(inputs, progress=False)[1] == 0.0  # reused
    for k in range(len(inputs)):  # evaluation: bit for bit
        assert np.array_equal(cache.eval_image(k, inputs.geometry), inputs.decode(k))
    positions = [list(range(len(inputs)))]
    direct = collect(Stream(inputs, "cpu", CPU, workers=0), positions, 0)
    cached = collect(Stream(inputs, "cache", CPU, workers=0), positions, 0)
    assert torch.equal(
        collect(Stream(inputs, "cache", CPU, workers=0), positions, -1),
        collect(Stream(inputs, "cpu", CPU, workers=0), positions, -1),
    )
    # training: the same crops, flips and jitter, resampled from the resized frame
    assert (direct - cached).abs().mean() < 6.0
    # ... also when the workers only cut the region out and the device resizes (as on CUDA)
    on_device = collect(Stream(inputs, "cache", CPU, workers=0, ops="device"), positions, 0)
    assert (direct / 255 - on_device).abs().mean() < 0.03
    other = collect(Stream(inputs, "cpu", CPU, workers=0), positions, 1)
    assert (direct - other).abs().mean() > (direct - cached).abs().mean()


def test_augmentation_depends_on_seed_epoch_position_only(tiny_lt: Path) -> None:
    inputs = train_inputs(tiny_lt)
    order = [[3, 1, 4], [0, 5, 9], [2, 6, 7]]
    a = collect(Stream(inputs, "cpu", CPU, workers=0), order, 2)
    b = collect(Stream(inputs, "cpu", CPU, workers=2), order, 2)
    assert torch.equal(a, b)
    c = collect(Stream(inputs, "cpu", CPU, workers=0, seed=1), order, 2)
    assert not torch.equal(a, c)
    single = collect(Stream(inputs, "cpu", CPU, workers=0), [[9]], 2)
    assert torch.equal(single[0], a[5])
    # jitter left to the device (as on CUDA): the same factors, tensor formulas instead of PIL
    d = collect(Stream(inputs, "cpu", CPU, workers=0, ops="device"), order, 2)
    assert d.dtype == torch.float32 and (d - a / 255).abs().mean() < 0.02


def test_rrc_box_stays_in_the_image_within_scale_and_ratio() -> None:
    rng = np.random.default_rng(0)
    for w, h in [(500, 375), (375, 500), (64, 64), (30, 200)]:
        for _ in range(200):
            left, top, cw, ch = rrc_box(w, h, rng)
            assert left >= 0 and top >= 0 and left + cw <= w and top + ch <= h and cw > 0 < ch
    ratios = []
    for _ in range(300):
        _, _, cw, ch = rrc_box(500, 375, rng)
        ratios.append(cw / ch)
        assert 0.08 * 0.9 <= cw * ch / (500 * 375) <= 1.0
    assert RRC_RATIO[0] * 0.95 <= min(ratios) and max(ratios) <= RRC_RATIO[1] * 1.05


def test_pil_jitter_is_torchvision_color_jitter_on_pil_images() -> None:
    import torchvision.transforms.functional as TF
    from PIL import Image

    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (20, 24, 3), dtype=np.uint8))
    aug = Augment((0, 0, 24, 20), False, np.array([1.3, 0.7, 1.2], np.float32), np.array([2, 0, 1]))
    ref = img
    for k in aug.order:
        fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)[k]
        ref = fn(ref, float(aug.jitter[k]))
    assert np.array_equal(np.asarray(jitter_pil(img, aug)), np.asarray(ref))


def test_device_color_jitter_is_torchvision_on_tensors() -> None:
    import torchvision.transforms.v2.functional as TF

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 9, 11, generator=gen)
    factors = 0.6 + 0.8 * torch.rand(5, 3, generator=gen)
    order = torch.stack([torch.randperm(3, generator=gen) for _ in range(5)])
    out = color_jitter(x, factors, order)
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in range(5):
        ref = x[i]
        for k in order[i].tolist():
            ref = fns[k](ref, float(factors[i, k]))
        assert torch.allclose(out[i], ref, atol=1e-5)


def test_gpu_path_logic_runs_on_the_cpu_and_matches_pil(tiny_lt: Path) -> None:
    """The gpu path (bytes read by workers, batched decode_jpeg, crops on the device) with the
    device set to the CPU: its output is close to PIL's (different resampling code)."""
    inputs = train_inputs(tiny_lt, train_transform="crop-flip")
    positions = [list(range(len(inputs)))]
    ref_eval = collect(Stream(inputs, "cpu", CPU, workers=0), positions, -1) / 255
    gpu_eval = collect(Stream(inputs, "gpu", CPU, workers=0), positions, -1)
    assert gpu_eval.dtype == torch.float32 and gpu_eval.shape == ref_eval.shape
    assert (gpu_eval - ref_eval).abs().mean() < 0.03
    ref_train = collect(Stream(inputs, "cpu", CPU, workers=0), positions, 0) / 255
    gpu_train = collect(Stream(inputs, "gpu", CPU, workers=2), positions, 0)
    assert (gpu_train - ref_train).abs().mean() < 0.03


def test_decode_batch_falls_back_for_non_jpeg(tmp_path: Path) -> None:
    from PIL import Image

    img = np.random.RandomState(1).randint(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "b.jpg", quality=95)
    datas = [
        torch.frombuffer(bytearray((tmp_path / n).read_bytes()), dtype=torch.uint8)
        for n in ("a.png", "b.jpg")
    ]
    png, jpg = decode_batch(datas, CPU)
    assert torch.equal(png, torch.from_numpy(img).permute(2, 0, 1))
    assert jpg.shape == (3, 6, 7)


def test_training_crop_from_a_square_frame_covers_the_same_region(tmp_path: Path) -> None:
    """A square (group_DRO) geometry stretches the frame: the box is mapped per axis."""
    rng = np.random.RandomState(0)
    layouts.jpeg(tmp_path / "x.jpg", rng, (60, 30))
    g = Geometry(16, 20, square=True, train="crop-flip")
    img = open_rgb(tmp_path / "x.jpg")
    aug = draw_augment(60, 30, g, seed=0, epoch=0, position=0)
    direct = augmented(img, aug, g).astype(float)
    from benchmark.imagefiles import FileList, ImageFiles

    files = ImageFiles(FileList(tmp_path, ["x.jpg"], np.array([1]), "sq"), g)
    cache, _ = FrameCache.build(files, workers=0, progress=False)
    assert cache.frame(0).shape == (20, 20, 3) and cache.original_size(0) == (60, 30)
    assert np.abs(cache.train_image(0, g, aug).astype(float) - direct).mean() < 12


def test_bench_run_streams_a_lazy_dataset_end_to_end(cli, tiny_lt: Path, tmp_path: Path) -> None:
    args = [
        "run",
        "--method",
        "erm",
        "--dataset",
        "imagenet-lt",
        "--data-root",
        tiny_lt,
        "--set",
        "backbone=tiny-cnn",
        "--set",
        "epochs=2",
        "--set",
        "batch_size=4",
        "--set",
        "dataset.size=16",
        "--set",
        "dataset.resize=20",
        "--json",
        "--quiet",
    ]
    code, out, err = cli(*args, "--results", tmp_path / "a")
    assert code == 0, err
    record = json.loads(out)[0]
    history = record["timings"]["train_history"]
    assert [h["decode"] for h in history] == ["cpu", "cpu"] and history[0]["images_per_s"] > 0
    assert set(record["metrics"]) == {"test"} and 0 <= record["metrics"]["test"]["acc"] <= 1
    assert {"many", "medium", "few"} <= set(record["metrics"]["test"])
    # same seed, same numbers (CPU)
    code, again, _ = cli(*args, "--results", tmp_path / "b")
    assert json.loads(again)[0]["metrics"] == record["metrics"]
    # bench cache builds the frame cache; bench run then reads from it by itself
    code, out, err = cli(
        "cache",
        "imagenet-lt",
        "--data-root",
        tiny_lt,
        "--set",
        "size=16",
        "--set",
        "resize=20",
        "--workers",
        "0",
        "--json",
        "--quiet",
    )
    assert code == 0, err
    built = json.loads(out)["caches"]
    assert [c["split"] for c in built] == ["train", "val", "test"]
    assert built[0]["images"] == 11
    code, out, err = cli(*args, "--results", tmp_path / "c")
    assert code == 0, err
    assert {h["decode"] for h in json.loads(out)[0]["timings"]["train_history"]} == {"cache"}


def test_bench_cache_on_an_in_memory_dataset_says_so(cli) -> None:
    code, out, _ = cli(
        "cache",
        "glyph-lt",
        "--set",
        "num_classes=3",
        "--set",
        "n_max=4",
        "--set",
        "n_test=1",
        "--set",
        "n_val=1",
        "--set",
        "size=8",
    )
    assert code == 0 and "nothing to cache" in out


def test_bench_decode_setting_is_checked(tiny_lt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.errors import BenchError
    from benchmark.streaming import decode_path

    inputs = train_inputs(tiny_lt, resize=22)
    monkeypatch.setenv("BENCH_DECODE", "gpu")
    with pytest.raises(BenchError, match="needs a CUDA device"):
        decode_path(inputs, CPU)
    monkeypatch.setenv("BENCH_DECODE", "fast")
    with pytest.raises(BenchError, match="must be one of"):
        decode_path(inputs, CPU)
    monkeypatch.setenv("BENCH_DECODE", "auto")
    assert decode_path(inputs, CPU) == "cpu"
    monkeypatch.setenv("BENCH_DECODE", "cache")
    assert decode_path(inputs, CPU, progress=False) == "cache"
    monkeypatch.setenv("BENCH_DECODE", "auto")
    assert decode_path(inputs, CPU) == "cache"


def test_a_damaged_image_is_one_line_naming_the_file(tmp_path: Path) -> None:
    from benchmark.errors import BenchError

    lines = layouts.write_split_files(tmp_path, counts=(4, 2))
    bad = lines["train"][2].split()[0]
    (tmp_path / bad).write_bytes(b"not a jpeg")
    inputs = train_inputs(tmp_path)
    for mode in ("cpu", "gpu"):
        with pytest.raises(BenchError) as err:
            collect(Stream(inputs, mode, CPU, workers=2), [list(range(len(inputs)))], 0)
        assert "\n" not in str(err.value) and bad in str(err.value), mode
    with pytest.raises(BenchError, match="damaged or not an image"):
        FrameCache.build(inputs, workers=2, progress=False)
    assert not list((FrameCache.folder_for(inputs)).parent.glob(".*partial*"))
