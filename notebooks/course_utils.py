# Codi comú del curs (Batch Normalization amb PyTorch).
# No editeu aquesta cel·la: la font única és notebooks/course_utils.py del repositori.
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn

# Mode ràpid: l'activa nbgrader en corregir (NBGRADER_EXECUTION) o COURSE_MODE=fast.
# En mode complet (Colab) s'usen dades reals i més èpoques.
FAST = bool(os.environ.get("NBGRADER_EXECUTION")) or os.environ.get("COURSE_MODE", "").lower() == "fast"

# GPU si n'hi ha, CPU si no.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# En mode ràpid els tensors són petits: amb un sol fil de càlcul la CPU no perd
# temps coordinant fils (i la correcció de tota la classe va molt més de pressa).
if FAST and DEVICE.type == "cpu":
    torch.set_num_threads(1)


def seed_everything(seed=0):
    """Fixa les llavors de random, numpy i torch perquè els resultats es puguin repetir."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def progress(iterable, **kwargs):
    """Barra de progrés (tqdm); en mode ràpid no es mostra.

    Dins d'un quadern és la barra de quadern de tqdm (un widget) i fora, la de text. No fem
    servir tqdm.auto: la seva classe (la variant asyncio) ja crida iter(iterable) en crear la
    barra, i després el bucle en crida un altre. Amb un DataLoader amb num_workers > 0, el
    primer iterador engega uns processos que ningú no llegeix ni atura: a cada època se
    n'acumulen més, fins que el quadern es penja.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.autonotebook avisa quan tria la barra de quadern
        from tqdm.autonotebook import tqdm

    disable = kwargs.pop("disable", False)  # primer es treu de kwargs: no hi pot quedar repetit
    return tqdm(iterable, disable=FAST or disable, **kwargs)


# ---------------------------------------------------------------------------
# Dades
# ---------------------------------------------------------------------------

# Mitjana i desviació d'ImageNet: les que esperen els pesos preentrenats de torchvision.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = ("avió", "cotxe", "ocell", "gat", "cérvol", "gos", "granota", "cavall", "vaixell", "camió")


def make_synthetic_images(n, num_classes=10, size=32, seed=0):
    """Conjunt d'imatges generat (sense descàrregues), determinista i equilibrat.

    Cada imatge és una taca de franges (un "Gabor") de color aleatori, a una
    posició, mida, freqüència i fase aleatòries, sobre un fons amb brillantor
    aleatòria i soroll. La classe és l'orientació de les franges. Com que la
    fase és aleatòria, un model lineal no hi veu res; una CNN petita sí que ho
    aprèn, però no de manera trivial (classes veïnes difereixen pocs graus).
    Retorna un TensorDataset (imatges 3 x size x size float32, etiquetes int64).
    """
    if n < 1 or num_classes < 2 or size < 8:
        raise ValueError("calen n >= 1, num_classes >= 2 i size >= 8")
    # Un generador propi: el resultat no depèn de l'estat global de torch.
    g = torch.Generator().manual_seed(int(seed))

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=g)

    # Etiquetes equilibrades (0, 1, ..., C-1, 0, 1, ...) i després barrejades.
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    step = math.pi / num_classes
    theta = labels.float() * step + uniform(-0.2, 0.2, n) * step
    wavelength = uniform(0.22, 0.4, n) * size
    phase = uniform(0, 2 * math.pi, n)
    cx, cy = uniform(0.3, 0.7, n) * size, uniform(0.3, 0.7, n) * size
    sigma = uniform(0.2, 0.32, n) * size
    amplitude = uniform(0.6, 1.2, n)
    color = uniform(0.2, 1.0, n, 3) * torch.where(torch.rand(n, 3, generator=g) < 0.5, -1.0, 1.0)

    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xx, yy = xx[None], yy[None]  # (1, H, W) per fer broadcasting amb n imatges
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    along = dx * torch.cos(theta)[:, None, None] + dy * torch.sin(theta)[:, None, None]
    stripes = torch.cos(2 * math.pi * along / wavelength[:, None, None] + phase[:, None, None])
    window = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma[:, None, None] ** 2))
    pattern = (amplitude[:, None, None] * window * stripes)[:, None] * color[:, :, None, None]

    background = uniform(-0.5, 0.5, n, 3)[:, :, None, None]
    noise = 0.35 * torch.randn(n, 3, size, size, generator=g)
    images = (pattern + background + noise).float()
    return torch.utils.data.TensorDataset(images, labels.long())


def _split_indices(n, fractions, seed):
    """Particions disjuntes i deterministes de range(n) amb les fraccions donades."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    sizes = [int(round(f * n)) for f in fractions]
    out, start = [], 0
    for s in sizes:
        out.append(perm[start:start + s])
        start += s
    out.append(perm[start:])
    return out


def _real_transforms(image_size, augment):
    from torchvision import transforms as T

    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    resize = [T.Resize((image_size, image_size))]
    train = resize + ([T.RandomHorizontalFlip(), T.RandomCrop(image_size, padding=image_size // 8)] if augment else [])
    return T.Compose(train + normalize), T.Compose(resize + normalize)


def get_datasets(name="cifar10", fast=None, root="data", image_size=64, num_classes=10,
                 val_fraction=0.1, augment=True, seed=0, synthetic_sizes=(1000, 300, 300)):
    """Retorna (train, validation, test): la validació és una partició separada del test.

    - Mode ràpid (per defecte quan FAST): imatges generades, sense descàrregues
      (`synthetic_sizes` = mides de les tres particions).
    - name="cifar10": CIFAR-10 amb el descarregador de torchvision a `root`;
      la validació surt del conjunt d'entrenament oficial, el test és l'oficial.
    - name="imagefolder": carpeta local amb una subcarpeta per classe (p. ex. Tiny
      ImageNet): `root/train` (o `root`) i, si existeix, `root/test`; el que
      falti es parteix de l'entrenament.
    - name="synthetic": les imatges generades també en mode complet.
    Cada conjunt té l'atribut `classes` (noms de les classes).
    """
    fast = FAST if fast is None else fast
    if fast or name == "synthetic":
        n_train, n_val, n_test = synthetic_sizes
        parts = [make_synthetic_images(k, num_classes, image_size, seed + offset)
                 for k, offset in ((n_train, 0), (n_val, 1000), (n_test, 2000))]
        for ds in parts:
            ds.classes = [f"{round(180 * c / num_classes)}°" for c in range(num_classes)]
        return tuple(parts)

    from torchvision import datasets

    tf_train, tf_eval = _real_transforms(image_size, augment)
    if name == "cifar10":
        # Dues vistes del mateix fitxer: amb augmentació (train) i sense (validació).
        full_train = datasets.CIFAR10(root, train=True, download=True, transform=tf_train)
        full_eval = datasets.CIFAR10(root, train=True, download=False, transform=tf_eval)
        test = datasets.CIFAR10(root, train=False, download=True, transform=tf_eval)
        val_idx, train_idx = _split_indices(len(full_train), [val_fraction], seed)
        classes = list(CIFAR10_CLASSES)
    elif name == "imagefolder":
        base = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
        if not os.path.isdir(base):
            raise FileNotFoundError(f"no existeix la carpeta d'imatges {base!r}: indiqueu-la amb root=")
        full_train = datasets.ImageFolder(base, transform=tf_train)
        full_eval = datasets.ImageFolder(base, transform=tf_eval)
        test_dir = os.path.join(root, "test")
        if os.path.isdir(test_dir):
            test = datasets.ImageFolder(test_dir, transform=tf_eval)
            val_idx, train_idx = _split_indices(len(full_train), [val_fraction], seed)
        else:
            # Sense test propi: el test també surt de l'entrenament, disjunt de la validació.
            val_idx, test_idx, train_idx = _split_indices(len(full_train), [val_fraction, val_fraction], seed)
            test = torch.utils.data.Subset(full_eval, test_idx)
        classes = list(full_train.classes)
    else:
        raise ValueError(f"conjunt de dades desconegut {name!r}: useu 'cifar10', 'imagefolder' o 'synthetic'")
    train = torch.utils.data.Subset(full_train, train_idx)
    val = torch.utils.data.Subset(full_eval, val_idx)
    for ds in (train, val, test):
        ds.classes = classes
    return train, val, test


def make_loaders(train, val, test, batch_size=64, seed=0, num_workers=None):
    """DataLoaders de les tres particions; només l'entrenament es barreja (amb llavor fixa)."""
    if num_workers is None:
        num_workers = 0 if FAST else 2
    common = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=DEVICE.type == "cuda")
    g = torch.Generator().manual_seed(int(seed))
    return (torch.utils.data.DataLoader(train, shuffle=True, generator=g, **common),
            torch.utils.data.DataLoader(val, shuffle=False, **common),
            torch.utils.data.DataLoader(test, shuffle=False, **common))


def get_loaders(name="cifar10", fast=None, batch_size=64, seed=0, **kwargs):
    """get_datasets + make_loaders en una sola crida: (train_loader, val_loader, test_loader)."""
    return make_loaders(*get_datasets(name, fast, seed=seed, **kwargs), batch_size=batch_size, seed=seed)


# ---------------------------------------------------------------------------
# Entrenament i avaluació
# ---------------------------------------------------------------------------

def kaiming_init(model):
    """Inicialització de He (Kaiming) per a Conv2d/Linear i gamma=1, beta=0 per a BatchNorm.

    Pensada per a xarxes amb ReLU entrenades des de zero: conserva la variància
    de les activacions d'una capa a la següent. Retorna el mateix model.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def make_optimizer(model, name="sgd", lr=0.01, momentum=0.9, weight_decay=0.0):
    """SGD (amb moment) o Adam sobre els paràmetres entrenables (els congelats no hi entren)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimitzador desconegut {name!r}: useu 'sgd' o 'adam'")


def _notebook_function(name):
    if name not in globals():
        raise NameError(f"fit necessita una funció {name}: definiu-la abans (o passeu-la a fit)")
    return globals()[name]


def fit(model, train_loader, val_loader, epochs, lr, optimizer="sgd", momentum=0.9, weight_decay=0.0,
        criterion=None, device=DEVICE, train_fn=None, eval_fn=None, desc="èpoques"):
    """Entrena `epochs` èpoques i avalua a validació després de cada una.

    `train_fn` / `eval_fn` permeten usar les vostres pròpies funcions (mateixa
    signatura que train_one_epoch / evaluate). Retorna l'historial: llistes
    per època de train_loss, train_acc, val_loss, val_acc i time (segons), i
    `diverged` = True si la pèrdua deixa de ser finita (llavors s'atura).
    """
    requested = epochs
    if os.environ.get("COURSE_REHEARSAL") == "1":
        # Assaig automàtic del mode complet (només el fixa l'eina del repositori que el fa, mai
        # Colab): el camí complet s'executa sencer, però cada entrenament dura una sola època.
        epochs = min(epochs, 1)
    # Per defecte, les funcions train_one_epoch / evaluate del quadern (les de la cel·la
    # course_loops o les vostres): es busquen pel nom en el moment de la crida.
    train_fn = train_fn or _notebook_function("train_one_epoch")
    eval_fn = eval_fn or _notebook_function("evaluate")
    criterion = criterion or nn.CrossEntropyLoss()
    model.to(device)
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay) if isinstance(optimizer, str) else optimizer
    history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "time": [], "diverged": False}
    bar = progress(range(epochs), desc=desc)
    for _ in bar:
        start = time.perf_counter()
        train_loss, train_acc = train_fn(model, train_loader, opt, criterion, device)
        val_loss, val_acc = eval_fn(model, val_loader, criterion, device)
        for key, value in zip(("train_loss", "train_acc", "val_loss", "val_acc", "time"),
                              (train_loss, train_acc, val_loss, val_acc, time.perf_counter() - start)):
            history[key].append(float(value))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        if not math.isfinite(train_loss):
            history["diverged"] = True  # pesos amb NaN/inf: continuar no té sentit
            break
    if os.environ.get("COURSE_TIMING_LOG"):
        # Només l'eina que mesura el mode complet fixa aquesta variable (mai Colab): hi anota quantes
        # èpoques es demanaven i quant ha durat cadascuna, per estimar el temps de l'entrenament sencer.
        with open(os.environ["COURSE_TIMING_LOG"], "a") as log:
            log.write(json.dumps({"desc": str(desc), "epochs_requested": requested,
                                  "epoch_seconds": history["time"]}) + "\n")
    return history


def epochs_to_reach(history, target, key="val_acc"):
    """Primera època (començant per 1) en què `key` arriba a `target`; None si no hi arriba."""
    for i, value in enumerate(history[key]):
        if value >= target:
            return i + 1
    return None


# ---------------------------------------------------------------------------
# Gràfics
# ---------------------------------------------------------------------------

def plot_curves(histories, title=None):
    """Corbes de pèrdua i exactitud per època: entrenament (discontínua) i validació (contínua).

    `histories` és un diccionari {nom de la configuració: historial de fit}.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i % 10}"
        epochs = range(1, len(h["train_loss"]) + 1)
        for ax, metric in zip(axes, ("loss", "acc")):
            ax.plot(epochs, h[f"train_{metric}"], "--", color=color, alpha=0.7)
            ax.plot(epochs, h[f"val_{metric}"], "-", color=color, label=label)
    axes[0].set(xlabel="època", ylabel="pèrdua (entropia creuada)", title="Pèrdua")
    axes[1].set(xlabel="època", ylabel="exactitud", title="Exactitud", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(title="contínua: validació · discontínua: entrenament", fontsize=8, title_fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    plt.show()
    return fig


print(f"Mode: {'ràpid' if FAST else 'complet'} · dispositiu: {DEVICE}")
