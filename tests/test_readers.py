"""Readers of the real datasets, each on tiny files written in the official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import load_bundle
from benchmark.dataset import DATASETS
from benchmark.errors import BenchError, DatasetNotFoundError
from benchmark.imagefiles import ImageFiles, MaskFiles, take
from benchmark.plugins import load_plugins
from benchmark.readers import lt_indices

import layouts

load_plugins()
REAL = [name for name, cls in DATASETS.items() if cls.needs_data_root]


# -- in-memory formats ------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files_plain_or_gzipped(tmp_path: Path, gz: bool) -> None:
    truth = layouts.write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    bundle = load_bundle("mnist", root=tmp_path)  # the parent of torchvision's folder
    train, test = bundle.splits["train"], bundle.splits["test"]
    assert train.inputs.shape == (30, 1, 28, 28) and train.inputs.dtype == torch.uint8
    assert np.array_equal(train.inputs[:, 0].numpy(), truth["train"][0])
    assert np.array_equal(test.labels.numpy(), truth["t10k"][1])
    assert bundle.num_classes == 10 and bundle.eval_splits == ("test",)
    # the dataset's own folder works as the root too
    assert load_bundle("mnist", root=tmp_path / "MNIST" / "raw").fingerprint == bundle.fingerprint


def test_fashion_mnist_and_its_ood_pair_with_mnist(tmp_path: Path) -> None:
    fashion = layouts.write_mnist(tmp_path / "FashionMNIST" / "raw", seed=1)
    mnist = layouts.write_mnist(tmp_path / "MNIST" / "raw", seed=2)
    bundle = load_bundle("fashion-mnist-vs-mnist", {"n_val": 10}, root=tmp_path)
    assert bundle.track == "ood" and bundle.eval_splits == ("test", "ood_far")
    # the OoD track's protocol: a seeded val held out of train, nothing lost or repeated
    train, val = bundle.splits["train"], bundle.splits["val"]
    assert len(train) == 20 and len(val) == 10
    joined = torch.cat([train.inputs, val.inputs])[:, 0].flatten(1).numpy()
    assert sorted(map(bytes, joined)) == sorted(map(bytes, fashion["train"][0].reshape(30, -1)))
    assert bundle.mean == (0.2861,) and bundle.std == (0.3530,)
    ood = bundle.splits["ood_far"]
    assert ood.pair_with == "test" and (ood.labels == -1).all()
    assert np.array_equal(ood.inputs[:, 0].numpy(), mnist["t10k"][0])
    assert bundle.class_names[0] == "T-shirt/top"


def test_idx_with_a_bad_magic_number_is_the_layout_error(tmp_path: Path) -> None:
    layouts.write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DatasetNotFoundError, match=r"not an idx file.*expected layout"):
        load_bundle("mnist", root=tmp_path)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-7])
    with pytest.raises(DatasetNotFoundError, match="bytes of values"):
        load_bundle("mnist", root=tmp_path)


def test_cifar10_pickles_are_channel_planar_in_batch_order(tmp_path: Path) -> None:
    truth = layouts.write_cifar10(tmp_path)
    bundle = load_bundle("cifar10", root=tmp_path)
    x = bundle.splits["train"].inputs
    assert x.shape == (50, 3, 32, 32)
    n, c, h, w = 13, 2, 5, 7  # data row = 1024 R, 1024 G, 1024 B; row-major within a plane
    assert int(x[n, c, h, w]) == int(truth["train"][n, c * 1024 + h * 32 + w])
    assert bundle.splits["train"].labels.tolist() == truth["labels"].tolist()
    assert bundle.class_names[-1] == "truck" and bundle.splits["test"].inputs.shape[0] == 10


def test_cifar100_uses_fine_labels_and_pairs_with_cifar10(tmp_path: Path) -> None:
    layouts.write_cifar10(tmp_path)
    truth = layouts.write_cifar100(tmp_path)
    c100 = load_bundle("cifar100", root=tmp_path)
    assert c100.num_classes == 100 and c100.splits["train"].labels.tolist() == list(range(20))
    assert c100.class_names[3] == "c3"
    pair = load_bundle("cifar10-vs-cifar100", {"n_val": 5}, root=tmp_path)
    ood = pair.splits["ood_near"]
    assert pair.eval_splits == ("test", "ood_near") and len(pair.splits["val"]) == 5
    assert len(ood) == 20 and ood.pair_with == "test" and (ood.labels == -1).all()
    assert int(ood.inputs[0, 1, 0, 0]) == int(truth["test"][0, 1024])


def test_svhn_mat_is_transposed_and_label_10_is_digit_0(tmp_path: Path) -> None:
    truth = layouts.write_svhn(tmp_path / "svhn")
    layouts.write_cifar10(tmp_path)
    bundle = load_bundle("svhn", root=tmp_path)
    x, y = bundle.splits["train"].inputs, bundle.splits["train"].labels
    raw_x, raw_y = truth["train"]
    assert x.shape == (12, 3, 32, 32)
    assert int(x[4, 2, 3, 9]) == int(raw_x[3, 9, 2, 4])  # X is (H, W, C, N)
    assert y.tolist() == [int(v) % 10 for v in raw_y.ravel()] and int(y[9]) == 0
    pair = load_bundle("cifar10-vs-svhn", {"n_val": 5}, root=tmp_path)
    assert len(pair.splits["ood_far"]) == 8 and pair.splits["ood_far"].pair_with == "test"
    assert len(pair.splits["train"]) == 45 and len(pair.splits["val"]) == 5


# -- long-tailed CIFAR ------------------------------------------------------------------------
def ldam_reference(labels: np.ndarray, num_classes: int, imb_factor: float) -> np.ndarray:
    """LDAM-DRW's procedure as the spec states it: global legacy seed 0, then per class in
    ascending order np.random.shuffle and keep the first n_c (written from the spec)."""
    np.random.seed(0)
    img_max = len(labels) / num_classes
    keep = []
    for c in np.unique(labels):
        n_c = int(img_max * (imb_factor ** (c / (num_classes - 1.0))))
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        keep.append(idx[:n_c])
    return np.concatenate(keep)


@pytest.mark.parametrize(
    "classes,ratio,total,smallest",
    [(10, 100, 12406, 50), (10, 200, 11203, 25), (100, 100, 10847, 5), (100, 50, 12608, 10)],
)
def test_cifar_lt_indices_on_the_real_sizes(classes, ratio, total, smallest) -> None:
    labels = np.random.RandomState(3).permutation(np.repeat(np.arange(classes), 50000 // classes))
    keep = lt_indices(labels, classes, ratio)
    counts = np.bincount(labels[keep], minlength=classes)
    assert len(keep) == total and counts[0] == 50000 // classes and counts[-1] == smallest
    assert np.all(np.diff(counts) <= 0)
    assert np.array_equal(keep, ldam_reference(labels, classes, 1 / ratio))
    if (classes, ratio) == (10, 100):
        assert counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_cifar10_lt_reader_cuts_the_train_set_and_keeps_a_balanced_test(tmp_path: Path) -> None:
    layouts.write_cifar10(tmp_path, per_batch=20)
    full = load_bundle("cifar10", root=tmp_path)
    bundle = load_bundle("cifar10-lt", {"imbalance": 10.0}, root=tmp_path)
    counts = bundle.class_counts("train").tolist()
    assert counts == [int(10 * 0.1 ** (i / 9)) for i in range(10)]
    keep = ldam_reference(full.splits["train"].labels.numpy(), 10, 0.1)
    assert torch.equal(bundle.splits["train"].inputs, full.splits["train"].inputs[keep])
    assert torch.equal(bundle.splits["test"].inputs, full.splits["test"].inputs)
    assert bundle.track == "longtail" and bundle.options["imbalance"] == 10.0
    other = load_bundle("cifar10-lt", {"imbalance": 50.0}, root=tmp_path)
    assert other.fingerprint != bundle.fingerprint


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL)
def test_a_missing_folder_prints_the_expected_layout(name: str, tmp_path: Path) -> None:
    (tmp_path / "unrelated.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError) as err:
        load_bundle(name, root=tmp_path)
    message = str(err.value)
    assert "expected layout:" in message and "\n" not in message
    layout = " ".join(DATASETS.get(name).layout.split())
    assert layout and layout[:30] in message


def test_missing_data_root_on_the_command_line(cli, tmp_path: Path) -> None:
    code, _, err = cli("run", "--method", "erm", "--dataset", "cub", "--results", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert "pass --data-root DIR or set BENCH_DATA" in err and "CUB_200_2011" in err
    code, _, err = cli(
        "run", "--method", "erm", "--dataset", "imagenet-lt", "--data-root", tmp_path / "nope"
    )
    assert code == 2 and "does not exist" in err and "ImageNet_LT_" in err


# -- image folders ----------------------------------------------------------------------------
def test_imagenet_lt_is_lazy_and_fingerprinted_by_paths_and_sizes(tmp_path: Path) -> None:
    lines = layouts.write_split_files(tmp_path / "ImageNet")  # images + txt files together
    bundle = load_bundle("imagenet-lt", {"size": 16, "resize": 20}, root=tmp_path)
    train = bundle.splits["train"]
    assert isinstance(train.inputs, ImageFiles) and bundle.input_shape == (3, 16, 16)
    assert len(train) == len(lines["train"]) == 11 and len(bundle.splits["test"]) == 6
    assert bundle.class_counts().tolist() == [6, 3, 2] and bundle.num_classes == 3
    assert bundle.class_names == list(layouts.WNIDS)
    x = take(train.inputs, [0, 5])
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.uint8
    again = load_bundle("imagenet-lt", {"size": 16, "resize": 20}, root=tmp_path)
    assert again.fingerprint == bundle.fingerprint
    assert (
        load_bundle("imagenet-lt", {"size": 24, "resize": 28}, root=tmp_path).fingerprint
        != bundle.fingerprint
    )
    first = tmp_path / "ImageNet" / lines["train"][0].split()[0]
    first.write_bytes(first.read_bytes() + b"\0")  # one more byte: another file
    assert (
        load_bundle("imagenet-lt", {"size": 16, "resize": 20}, root=tmp_path).fingerprint
        != bundle.fingerprint
    )
    first.unlink()
    with pytest.raises(
        DatasetNotFoundError, match="1 of the 11 images listed in ImageNet_LT_train"
    ):
        load_bundle("imagenet-lt", root=tmp_path)


def test_split_files_may_sit_apart_from_the_images(tmp_path: Path) -> None:
    layouts.write_split_files(tmp_path, prefix="Places_LT", counts=(4, 2))
    (tmp_path / "Places_LT").mkdir()
    for split in ("train", "val", "test"):
        (tmp_path / f"Places_LT_{split}.txt").rename(
            tmp_path / "Places_LT" / f"Places_LT_{split}.txt"
        )
    bundle = load_bundle("places-lt", {"size": 16, "resize": 16}, root=tmp_path)
    assert (
        bundle.class_counts().tolist() == [4, 2]
        and bundle.splits["val"].inputs.files.root == tmp_path
    )
    (tmp_path / "Places_LT" / "Places_LT_val.txt").write_text("train/x.jpg not-a-label\n")
    with pytest.raises(DatasetNotFoundError, match="line 1 is not '<path> <label>'"):
        load_bundle("places-lt", root=tmp_path)


def test_inat2018_json_annotations(tmp_path: Path) -> None:
    layouts.write_inat(tmp_path / "inat2018")
    bundle = load_bundle("inat2018", {"size": 16, "resize": 16}, root=tmp_path)
    assert bundle.num_classes == 3 and bundle.class_names == ["3", "7", "11"]
    assert bundle.class_counts().tolist() == [3, 2, 1] and bundle.eval_splits == ("test",)
    assert bundle.splits["test"].labels.tolist() == [0, 1, 2]
    (tmp_path / "inat2018" / "val2018.json").write_text('{"images": [')
    with pytest.raises(DatasetNotFoundError, match=r"val2018\.json is not valid json"):
        load_bundle("inat2018", root=tmp_path)


def test_cub_masks_follow_the_image_geometry(tmp_path: Path) -> None:
    layouts.write_cub(tmp_path)
    bundle = load_bundle("cub", {"size": 16, "resize": 20}, root=tmp_path)
    test = bundle.splits["test"]
    assert bundle.track == "explain" and len(bundle.splits["train"]) == 2 and len(test) == 2
    assert test.labels.tolist() == [0, 1] and bundle.class_names[1] == "002.Laysan_Albatross"
    masks = test.attrs["mask"]
    assert isinstance(masks, MaskFiles) and masks.shape == (2, 16, 16)
    m = take(masks)
    # 40×30 image, left half object -> resize to 26×20, centre crop 16 from x = 5: columns
    # 0..7 object, 8 the blended edge, 9.. background
    assert m.shape == (2, 16, 16) and (m[:, :, :7] == 255).all() and (m[:, :, 10:] == 0).all()
    assert load_bundle("cub", {"masks": False}, root=tmp_path).splits["test"].attrs == {}
    # the masks may also live inside CUB_200_2011/
    inside = tmp_path / "b"
    layouts.write_cub(inside, masks_inside=True)
    assert len(load_bundle("cub", root=inside / "CUB_200_2011").splits["train"]) == 2
    (tmp_path / "segmentations").rename(tmp_path / "segs")
    with pytest.raises(DatasetNotFoundError, match="'segmentations/' not found"):
        load_bundle("cub", root=tmp_path)


def test_waterbirds_metadata_gives_groups_and_bias(tmp_path: Path) -> None:
    rows = layouts.write_waterbirds(tmp_path)
    bundle = load_bundle("waterbirds", {"size": 16, "resize": 18}, root=tmp_path)
    test = bundle.splits["test"]
    expected = [(y, p) for y, s, p in rows if s == 2]
    assert test.labels.tolist() == [y for y, _ in expected]
    assert test.attrs["bias"].tolist() == [p for _, p in expected]
    assert test.attrs["group"].tolist() == [2 * y + p for y, p in expected]
    assert test.attrs["aligned"].tolist() == [y == p for y, p in expected]
    assert bundle.splits["train"].inputs.geometry.square  # group_DRO's Resize((256, 256))
    assert set(bundle.splits) == {"train", "val", "test"}
    csv = tmp_path / "waterbird_complete95_forest2water2" / "metadata.csv"
    csv.write_text(csv.read_text().replace("place,", "where,", 1))
    with pytest.raises(DatasetNotFoundError, match="no column"):
        load_bundle("waterbirds", root=tmp_path)


def test_imagenet_s_masks_decode_r_plus_256_g(tmp_path: Path) -> None:
    layouts.write_imagenet_s(tmp_path)
    bundle = load_bundle("imagenet-s", {"size": 24, "resize": 24}, root=tmp_path)
    assert bundle.eval_splits == ("val",) and bundle.class_names == list(layouts.WNIDS[:2])
    assert len(bundle.splits["train"]) == 4 and bundle.splits["val"].labels.tolist() == [0, 1]
    m = take(bundle.splits["val"].attrs["mask"])
    assert m.shape == (2, 24, 24)  # 32×24 -> short side 24 -> crop 24² from x = 4
    assert (m[:, :8] == 255).all()  # id 5: object
    assert (m[:, 8:12] == 0).all()  # id 1000: ignore, not object
    assert (m[:, 12:] == 0).all()  # id 0: background


# -- Hugging Face -----------------------------------------------------------------------------
@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def test_hf_dataset_offline_without_cache_is_one_clear_line(cli, hf_offline: Path) -> None:
    code, _, err = cli("run", "--method", "erm", "--dataset", "hf:someone/absent")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "hf:someone/absent is not in the local Hugging Face cache" in err
    code, _, err = cli("run", "--method", "erm", "--dataset", "hf:not a repo")
    assert code == 2 and "is not hf:<owner>/<name>" in err


def test_hf_dataset_from_the_local_cache(cli, hf_offline: Path, tmp_path: Path) -> None:
    layouts.write_hf_cache(hf_offline, "me/tiny")
    assert DATASETS.get("hf:me/tiny") is DATASETS.get("hf:me/tiny")
    bundle = load_bundle("hf:me/tiny")
    assert bundle.input_shape == (3, 8, 8) and bundle.class_names == ["a", "b", "c"]
    assert bundle.class_counts().tolist() == [4, 4, 4] and len(bundle.splits["test"]) == 6
    assert load_bundle("hf:me/tiny").fingerprint == bundle.fingerprint  # from the bench cache
    code, out, err = cli(
        "run",
        "--method",
        "erm",
        "--dataset",
        "hf:me/tiny",
        "--results",
        tmp_path / "r",
        "--set",
        "backbone=tiny-cnn",
        "--set",
        "epochs=1",
        "--set",
        "batch_size=4",
        "--quiet",
    )
    assert code == 0, err
    assert "erm on hf:me/tiny" in out
    with pytest.raises(BenchError, match="no split 'nope'"):
        load_bundle("hf:me/tiny", {"test_split": "nope"})


@pytest.mark.parametrize(
    "dataset,backbone,epochs,milestones,weight_decay,augment",
    [
        ("fashion-mnist-vs-mnist", "duq-cnn", 30, [10, 20], 1e-4, "none"),
        ("cifar10-vs-svhn", "resnet18-cifar", 100, [25, 50, 75], 5e-4, "crop-flip"),
        ("cifar10-vs-cifar100", "resnet18-cifar", 100, [25, 50, 75], 5e-4, "crop-flip"),
    ],
)
def test_ood_pairs_declare_the_seed_papers_protocols(
    dataset: str, backbone: str, epochs: int, milestones: list, weight_decay: float, augment: str
) -> None:
    """DUQ's Fashion-MNIST and CIFAR-10 recipes (SGD 0.05, momentum 0.9, batch 128, ×0.2 at the
    milestones) resolve for ``erm`` on each OoD pair, and the backbones they name exist."""
    from benchmark.backbones import build_backbone
    from benchmark.data import DATASETS
    from benchmark.method import METHODS
    from benchmark.runner import resolve_hparams

    hp = resolve_hparams(METHODS.get("erm"), DATASETS.get(dataset), {})
    assert (hp["backbone"], hp["epochs"], list(hp["milestones"])) == (backbone, epochs, milestones)
    assert (hp["optimizer"], hp["lr"], hp["momentum"], hp["batch_size"]) == ("sgd", 0.05, 0.9, 128)
    assert (hp["weight_decay"], hp["lr_decay"], hp["augment"]) == (weight_decay, 0.2, augment)
    shape = (1, 28, 28) if backbone == "duq-cnn" else (3, 32, 32)
    net = build_backbone(backbone, shape)
    assert net(torch.zeros(2, *shape)).shape == (2, net.feature_dim)
