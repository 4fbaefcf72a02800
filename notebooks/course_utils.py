# Codi comú del curs (Batch Normalization amb PyTorch).
# No editeu aquesta cel·la: la font única és notebooks/course_utils.py del repositori.
import os
import random

import numpy as np
import torch

# Mode ràpid: l'activa nbgrader en corregir (NBGRADER_EXECUTION) o COURSE_MODE=fast.
# En mode complet (Colab) s'usen dades reals i més èpoques.
FAST = bool(os.environ.get("NBGRADER_EXECUTION")) or os.environ.get("COURSE_MODE", "").lower() == "fast"

# GPU si n'hi ha, CPU si no.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed=0):
    """Fixa les llavors de random, numpy i torch perquè els resultats es puguin repetir."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def progress(iterable, **kwargs):
    """Barra de progrés (tqdm); en mode ràpid no es mostra."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=FAST or kwargs.pop("disable", False), **kwargs)


print(f"Mode: {'ràpid' if FAST else 'complet'} · dispositiu: {DEVICE}")
