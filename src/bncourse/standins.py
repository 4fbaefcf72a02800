"""Stand-ins of the files the notebooks' full (Colab) mode downloads.

Full mode reads CIFAR-10 and Fashion-MNIST through torchvision's own dataset
classes and AlexNet's ImageNet weights through torchvision's weights API.  No
machine here reaches the internet, so the full-mode rehearsal and the timing
run write files of the **real formats and shapes** instead:

- CIFAR-10: ``<root>/cifar-10-batches-py/`` with ``data_batch_1..5``,
  ``test_batch`` and ``batches.meta``, Python pickles holding ``data`` (N x 3072
  uint8, channel-major 32x32 images) and ``labels``, as the real archive does.
  torchvision checks their MD5 against the real archive's; :func:`write_cifar10`
  returns the stand-ins' MD5s so that the kernel can be told to expect them
  (see ``fullmode_site/sitecustomize.py``).
- Fashion-MNIST: ``<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``,
  the big-endian IDX files torchvision parses (no checksum is checked on these).
- AlexNet and ResNet-18 ``IMAGENET1K_V1`` (``PRETRAINED``): a state_dict of the torchvision model (random
  weights) saved in ``<torch_home>/hub/checkpoints/`` under the file name of the
  weights' URL: ``torch.hub.load_state_dict_from_url`` loads a cached file without
  downloading it and without checking its hash.

The pixel values are random with balanced labels: the full path is exercised
(file formats, transforms, model sizes, speed), not what a network learns.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

CIFAR10_TRAIN_PER_BATCH = 10000  # the real set: 5 batches of 10 000, a test batch of 10 000
CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_TRAIN, FASHION_TEST = 60000, 10000


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _balanced_labels(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


def write_cifar10(root: Path, per_batch: int = CIFAR10_TRAIN_PER_BATCH, seed: int = 0) -> dict[str, str]:
    """Write the CIFAR-10 python batches under ``root``; return {file name: md5}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    md5 = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = _balanced_labels(per_batch, 10, rng)
        batch = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8),
            "filenames": [f"standin_{name}_{i}.png" for i in range(per_batch)],
        }
        path = folder / name
        with open(path, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        md5[name] = _md5(path)
    meta = folder / "batches.meta"
    with open(meta, "wb") as f:
        pickle.dump({"label_names": CIFAR10_LABEL_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f,
                    protocol=2)
    md5["batches.meta"] = _md5(meta)
    return md5


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file: magic (0, 0, type 0x08 = uint8, number of dimensions), big-endian sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion_mnist(root: Path, train: int = FASHION_TRAIN, test: int = FASHION_TEST, seed: int = 0) -> None:
    """Write the four Fashion-MNIST IDX files under ``root/FashionMNIST/raw``."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", _balanced_labels(n, 10, rng).astype(np.uint8))


# (torchvision builder, weights enum member) of every pretrained model a notebook loads in full mode
PRETRAINED = (("alexnet", "AlexNet_Weights"), ("resnet18", "ResNet18_Weights"))


def checkpoint_path(torch_home: Path, weights_enum: str = "AlexNet_Weights") -> Path:
    """Where torch.hub looks for ``<weights_enum>.IMAGENET1K_V1`` before downloading it."""
    from urllib.parse import urlparse

    import torchvision.models

    url = getattr(torchvision.models, weights_enum).IMAGENET1K_V1.url
    return Path(torch_home) / "hub" / "checkpoints" / Path(urlparse(url).path).name


def alexnet_checkpoint_path(torch_home: Path) -> Path:
    """Where torch.hub looks for AlexNet_Weights.IMAGENET1K_V1 before downloading it."""
    return checkpoint_path(torch_home, "AlexNet_Weights")


def write_pretrained_weights(torch_home: Path, builder: str, weights_enum: str, seed: int = 0) -> Path:
    """Save a random state_dict of ``torchvision.models.<builder>`` where the weights API finds it in its cache."""
    import torch
    import torchvision

    path = checkpoint_path(torch_home, weights_enum)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(getattr(torchvision.models, builder)(weights=None).state_dict(), path)
    return path


def write_alexnet_weights(torch_home: Path, seed: int = 0) -> Path:
    """Save a random AlexNet state_dict where the weights API will find it in its cache."""
    return write_pretrained_weights(torch_home, "alexnet", "AlexNet_Weights", seed)


def write_all(data_root: Path, torch_home: Path, cifar_per_batch: int = CIFAR10_TRAIN_PER_BATCH,
              fashion_sizes: tuple[int, int] = (FASHION_TRAIN, FASHION_TEST)) -> dict[str, str]:
    """Every stand-in; returns the CIFAR-10 MD5s the kernel must accept."""
    md5 = write_cifar10(data_root, cifar_per_batch)
    write_fashion_mnist(data_root, *fashion_sizes)
    for builder, weights_enum in PRETRAINED:
        write_pretrained_weights(torch_home, builder, weights_enum)
    return md5
