"""Every word the engine writes for this course's students, in Catalan.

The engine (``coursekit``) speaks English unless told otherwise; a course gives its
own words as the traits of the engine's components, in its ``nbgrader_config.py``.
:func:`configure` sets them all, so that the course's configuration reads::

    from bncourse.messages import configure
    configure(c)
"""
from __future__ import annotations

# What a failed out-of-kernel re-check says (coursekit.trusted.MESSAGES has the keys).
TRUSTED_ERROR_NAME = "VerificacioIndependent"
TRUSTED = {
    "unverified": "no s'ha pogut verificar la vostra implementació fora del nucli ({why}); "
                  "torneu a executar el quadern de dalt a baix i comproveu que no falla ni es penja",
    "timeout": "el codi no ha acabat a temps",
    "no_results": "el codi no ha donat resultats",
    "forged": "aquesta prova ha fallat; el resultat que la cel·la mostra abans de l'error no compta "
              "com a puntuació parcial",
    "delegation": "la implementació ha de ser vostra: s'ha detectat {what}. "
                  "No podeu fer servir F.batch_norm, nn.BatchNorm1d ni cap capa de normalització de PyTorch, "
                  "ni amagar el codi (eval, exec, getattr o pydoc.locate amb noms calculats, torch._C, torch.ops, "
                  "%%writefile, mòduls propis, fils o processos...)",
    "guard_lost": "que les capes de normalització de PyTorch no s'han pogut desactivar durant la verificació",
    "threads": "codi que engega fils o processos ({kinds}), on la verificació no arriba",
    "new_threads": "fils nous",
    "operator": "l'operació interna {op}",
    "finding": "«{rule}» a la línia {line} d'una cel·la vostra",
    "invalid": "resultat no vàlid ({name})",
}


def configure(c) -> None:
    """Give the engine's components the course's words (``c``: the nbgrader config being built)."""
    c.TrustedChecks.error_name = TRUSTED_ERROR_NAME
    c.TrustedChecks.messages = dict(TRUSTED)
