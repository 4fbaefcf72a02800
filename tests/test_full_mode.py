"""The notebooks' full (Colab) path, rehearsed here without internet.

Stand-in files of the real formats and sizes (CIFAR-10 python batches,
Fashion-MNIST IDX files, an AlexNet checkpoint in torch.hub's cache) are read
through torchvision's own classes and weights API; every source notebook runs
top to bottom in full mode in a real kernel (nbclient, as Colab runs it) with
only the training length capped (``bncourse.fullmode``).  A download attempt
fails loudly.  The tests marked ``rehearsal`` take minutes and run in
``make rehearsal`` (CI runs it after ``make test``).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bncourse import fullmode, standins
from coursekit.paths import Course
from conftest import REPO

pytestmark = pytest.mark.slow


def kernel_python(env: dict[str, str], code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with a full-mode kernel's environment."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


# --- the stand-ins and the guard, without a notebook -------------------------------------------

@pytest.fixture(scope="module")
def small_standins(tmp_path_factory):
    """Small stand-ins (same formats, fewer images) for the checks that do not need the real sizes."""
    work = tmp_path_factory.mktemp("standins")
    md5 = standins.write_cifar10(work / "data", per_batch=20)
    standins.write_fashion_mnist(work / "data", train=30, test=10)
    return work, md5


def test_torchvision_reads_the_dataset_standins(small_standins):
    work, md5 = small_standins
    env = fullmode.kernel_env(work, md5, rehearsal=False)
    proc = kernel_python(env, (
        "from torchvision import datasets\n"
        "tr = datasets.CIFAR10('data', train=True, download=True)\n"
        "te = datasets.CIFAR10('data', train=False, download=True)\n"
        "img, y = tr[0]\n"
        "f = datasets.FashionMNIST('data', train=True, download=True)\n"
        "ft = datasets.FashionMNIST('data', train=False, download=True)\n"
        "print(len(tr), len(te), tr.data.shape, img.size, img.mode, type(y).__name__, len(tr.classes))\n"
        "print(len(f), len(ft), tuple(f.data.shape), f.data.dtype, sorted(set(f.targets.tolist())) == list(range(10)))\n"
    ), work)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "100 20 (100, 32, 32, 3) (32, 32) RGB int 10"
    assert lines[-1] == "30 10 (30, 28, 28) torch.uint8 True"


def test_a_rejected_standin_makes_the_download_fail_loudly(small_standins):
    """Without the stand-ins' MD5s torchvision finds the CIFAR-10 files corrupt and tries to download:
    the guard turns that into an error naming the network access instead of a fetch."""
    work, md5 = small_standins
    env = fullmode.kernel_env(work, md5, rehearsal=False)
    env.pop("COURSE_STANDIN_CIFAR10_MD5")
    proc = kernel_python(env, "from torchvision import datasets\ndatasets.CIFAR10('data', train=True, download=True)",
                         work)
    assert proc.returncode != 0
    assert "RehearsalNetworkError" in proc.stderr and "network access attempted" in proc.stderr, proc.stderr


@pytest.mark.rehearsal
def test_weights_api_loads_the_cached_standin_without_download_or_hash_check(tmp_path):
    """torchvision's weights enum with check_hash=True loads the stand-in checkpoint from TORCH_HOME's cache;
    the stand-in's bytes do not match the hash in the file name, so a checked download would have failed."""
    path = standins.write_alexnet_weights(tmp_path / "torch_home", seed=3)
    assert path.name == "alexnet-owt-7be5be79.pth" and path.parent == tmp_path / "torch_home" / "hub" / "checkpoints"
    env = fullmode.kernel_env(tmp_path, {}, rehearsal=False)
    env.pop("COURSE_STANDIN_CIFAR10_MD5")
    code = (
        "import torch, hashlib, sys\n"
        "from torchvision.models import alexnet, AlexNet_Weights\n"
        f"saved = torch.load({str(path)!r})\n"
        "m = alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)\n"
        "same = all(torch.equal(v, saved[k]) for k, v in m.state_dict().items())\n"
        f"digest = hashlib.sha256(open({str(path)!r}, 'rb').read()).hexdigest()\n"
        "print(same, digest.startswith('7be5be79'))\n"
    )
    proc = kernel_python(env, code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "True False"
    # Without the cached file the weights API downloads: the guard stops it, loudly.
    path.unlink()
    proc = kernel_python(env, "from torchvision.models import alexnet, AlexNet_Weights\n"
                              "alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)", tmp_path)
    assert proc.returncode != 0 and "network access attempted" in proc.stderr, proc.stderr


# --- every notebook's full path in a real kernel -----------------------------------------------

@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """``coursekit rehearse`` run once, as `make rehearsal` users and CI do: stand-ins at the real sizes
    (50 000 + 10 000 CIFAR-10 images, 60 000 + 10 000 Fashion-MNIST, a full AlexNet checkpoint), every
    notebook in full mode with the training capped; the executed notebooks are kept for the checks."""
    out = tmp_path_factory.mktemp("rehearsal")
    proc = subprocess.run([sys.executable, "-m", "coursekit", "--course", str(REPO), "rehearse",
                           "--out", str(out / "times.json"), "--save-notebooks", str(out / "executed")],
                          capture_output=True, text=True, timeout=3600)
    result = json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else None
    return proc, result, out


def stdout_of(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


# What each notebook prints only when its full path really ran (full mode, real sizes, pretrained weights).
FULL_PATH_MARKS = {
    "a1_batchnorm1d": ["Mode: complet", "50000 exemples d'entrenament, 10000 de validació, 10000 de test; "
                       "784 característiques, 10 classes"],
    "a2_batchnorm2d": ["Mode: complet", "lot 2:", "lot 128:"],
    "a3_alexnet_bn": ["Mode: complet", "dataset: cifar10", "entrenament: 15000 · validació: 5000 · test: 10000",
                      "congelada + BN:", "configuració triada amb la validació"],
    # A4 and A5: the shared setup's full-mode banner; that the whole notebook ran without error is checked too
    "a4_hyperparameters": ["Mode: complet"],
    # A5: also the transfer comparison with the full-size networks and AlexNet's ImageNet checkpoint loaded
    "a5_modern_architectures": ["Mode: complet", "AlexNet+BN: 28 claus sense pes preentrenat, totes de les 7 BN noves",
                                "ResNet-18 |  11,181,642 |  11,181,642 |", "AlexNet+BN |  57,063,498 |  57,063,498 |"],
}


@pytest.mark.rehearsal
@pytest.mark.parametrize("assignment", list(FULL_PATH_MARKS))
def test_full_mode_path_runs_end_to_end(rehearsal, assignment):
    import nbformat

    proc, result, out = rehearsal
    assert result is not None, f"no result written:\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    entry = result["notebooks"][assignment]
    assert "error" not in entry, entry.get("error")
    nb = nbformat.read(str(out / "executed" / f"{assignment}.ipynb"), as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    text = stdout_of(nb)
    for mark in FULL_PATH_MARKS[assignment]:
        assert mark in text, f"{assignment}: {mark!r} not printed; stdout:\n{text[-3000:]}"


@pytest.mark.rehearsal
def test_rehearsal_records_the_time_of_every_notebook_and_section(rehearsal):
    """What `coursekit time-full-mode` writes on a GPU machine, written here with the rehearsal's caps."""
    proc, result, out = rehearsal
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert result["kind"].startswith("rehearsal") and result["machine"]["cpu_count"]
    assert list(result["notebooks"]) == list(FULL_PATH_MARKS)
    for assignment, entry in result["notebooks"].items():
        assert entry["seconds"] > 0 and entry["sections"]
        assert sum(s["seconds"] for s in entry["sections"]) <= entry["seconds"]
    sections = {s["section"]: s["seconds"] for s in result["notebooks"]["a3_alexnet_bn"]["sections"]}
    assert sections["4.4 Aprenentatge per transferència amb les convolucions congelades"] > 0
    assert not any("SOLUTION" in name for name in sections)
    table = (out / "times.md").read_text()
    assert "| **a2_batchnorm2d** | **total** |" in table and "3. Per què els lots petits perjudiquen BatchNorm" in table


def test_progress_bars_in_a_kernel_leave_no_dataloader_workers_behind(tmp_path):
    """Full mode in a real kernel, as in Colab: the notebook (widget) progress bar over a DataLoader with two
    workers, several epochs.  Each pass must start one set of workers and stop it; a bar that iterates the
    loader a second time (tqdm.auto's class does) leaves an idle set per pass running, and the full-mode
    notebooks piled them up until they hung."""
    import nbformat
    from nbclient import NotebookClient

    shared = (REPO / "notebooks" / "course_utils.py").read_text(encoding="utf-8")
    loop = (
        "import multiprocessing\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "loader = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=8, num_workers=2)\n"
        "iterators, real = [], DataLoader._get_iterator\n"
        "DataLoader._get_iterator = lambda self: iterators.append(1) or real(self)\n"
        "total = 0.0\n"
        "for epoch in progress(range(4), desc='èpoques'):\n"
        "    for (x,) in progress(loader, desc='lots', leave=False):\n"
        "        total += float(x.sum())\n"
        "print('bar:', type(progress([])).__module__)\n"
        "print('passes: 4, iterators:', len(iterators), ', workers running:', len(multiprocessing.active_children()),"
        " ', sum:', total)\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(shared), nbformat.v4.new_code_cell(loop)])
    env = fullmode.kernel_env(tmp_path, {}, rehearsal=False)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute(env=env)
    out = stdout_of(nb)
    assert "passes: 4, iterators: 4 , workers running: 0 , sum: 8064.0" in out, out
    assert "Mode: complet" in out and "bar: tqdm.notebook" in out, out  # the widget bar, as in Colab


def test_a_cell_past_its_limit_fails_with_the_kernels_stacks(tmp_path):
    """A hang is reported with where it is: the Python stacks of the kernel (and of what it forked)."""
    import nbformat

    path = tmp_path / "hangs.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import time\n\ndef waits_forever():\n    time.sleep(600)\n\nwaits_forever()\n")]), str(path))
    with pytest.raises(fullmode.NotebookFailed) as failed:
        fullmode.execute(path, tmp_path, fullmode.kernel_env(tmp_path, {}, rehearsal=True), cell_timeout=5)
    message = str(failed.value)
    assert "hangs.ipynb: a cell ran past 5 s" in message
    assert "in waits_forever" in message and "Thread 0x" in message, message
