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

# The note that takes the place of output a kernel sent past its caps (coursekit.sandbox.manager.OUTPUT_NOTICES).
OUTPUT_NOTICES = {
    "cut": "\n[sortida truncada: {what}; la resta no s'ha desat]\n",
    "notebook_bytes": "aquest quadern ha escrit més de {mb} MB",
    "notebook_messages": "aquest quadern ha enviat més de {count} sortides",
    "cell_messages": "aquesta cel·la ha enviat més de {count} sortides",
}

# First line of a release stub that the repair comments out (coursekit.restore.STUB_NOTE).
STUB_NOTE = "[coursekit] enunciat original desactivat: la vostra resposta és en una cel·la anterior"

# What replaces output types the feedback does not show (coursekit.inert.REMOVED_NOTE).
REMOVED_NOTE = ("[sortida eliminada: el corrector no mostra contingut actiu ({types}); "
                "només text i imatges PNG/JPEG]")

# The labels and notes of evidence cells (coursekit.evidence.WORDS).
COLAB_TITLE = "Resultats de la vostra execució (Colab)"
FAST_TITLE = "Re-execució de la correcció automàtica (mode ràpid)"
EVIDENCE = {
    "colab_label": f"**{COLAB_TITLE}**: les sortides tal com les vas enviar, sense tornar-les a executar "
                   "(només text i imatges). Són les que valoren les respostes escrites.",
    "colab_empty": f"**{COLAB_TITLE}**: aquesta cel·la no tenia cap sortida quan la vas enviar "
                   "(no la vas executar abans de desar el quadern?).",
    "fast_label": f"**{FAST_TITLE}**: dades generades i poques èpoques. Serveix per comprovar que el codi "
                  "s'executa de dalt a baix; els números i les gràfiques no són els de Colab.",
    "clipped": "\n… [sortida retallada: {total} caràcters, se'n mostren {shown}]",
    "omitted": "{what} omesa: {why}",
    "text_output": "sortida de text",
    "error": "error",
    "image": "imatge",
    "image_text": "<imatge {mime}>",
    "invalid_image": "imatge {mime} omesa: el contingut no és una imatge vàlida",
    "other_omitted": "sortida omesa ({types}): només es mostren text i imatges PNG/JPEG",
    "over_limit": "la cel·la supera el límit de sortides",
    "notebook_over": "el quadern supera el límit de {kb} kB de sortides",
    "cell_over": "la cel·la supera el límit de {kb} kB",
}

# The self-check cell at the end of every release notebook (coursekit.student_guide.SELF_CHECK).
SELF_CHECK_RUNNER = r'''
def _comprovacio_final(parts, respostes):
    import contextlib, io, os, traceback
    if os.environ.get("NBGRADER_EXECUTION"):
        print("Comprovació final omesa: el corrector automàtic ja executa totes les proves.")
        return
    try:
        shell = get_ipython()  # noqa: F821 (IPython defines it in a notebook)
    except NameError:
        shell = None
    total = fets = 0
    for nom, punts, descripcio, codi in parts:
        total += punts
        if shell is not None:
            codi = shell.transform_cell(codi)
        espai = dict(globals())
        sortida = io.StringIO()
        try:
            with contextlib.redirect_stdout(sortida), contextlib.redirect_stderr(sortida):
                exec(compile(codi, f"<comprovació {nom}>", "exec"), espai)
        except NotImplementedError:
            estat = "· en blanc: hi queda el codi inicial (NotImplementedError) per completar"
        except NameError as error:
            estat = f"· falta alguna cosa: {error}. Heu executat (i completat) les cel·les d'abans?"
        except AssertionError as error:
            missatge = (str(error).strip().splitlines() or ["una comprovació no es compleix"])[0]
            estat = f"✘ falla: {missatge[:300]}"
        except Exception as error:  # any other error of the student's code: say which, never crash
            linia = traceback.format_exception_only(type(error), error)[-1].strip()
            estat = f"✘ error: {linia[:300]}"
        else:
            estat = "✔ passa les comprovacions visibles"
            fets += punts
        print(f"{nom} ({punts} p.) — {descripcio}\n    {estat}")
    print(f"\nComprovacions visibles superades: {fets} de {total} punts automàtics.")
    if respostes:
        print("Respostes escrites (les corregeix el professorat; reviseu que no en quedi cap en blanc):")
        for nom, punts in respostes:
            print(f"  - {nom} ({punts} p.)")


_comprovacio_final(_PARTS, _RESPOSTES)
'''
SELF_CHECK = {
    "title": '# @title Comprovació final (executeu-la; no cal llegir-ne el codi) { display-mode: "form" }',
    "comment": "# Torna a executar les comprovacions visibles de cada part i en fa un resum. No la modifiqueu.",
    "answers_variable": "_RESPOSTES",
    "runner": SELF_CHECK_RUNNER,
    "no_description": "comprovació",
    "test_prefixes": ["Prova:", "Prova"],
}

# The "how long it takes" item of the before-you-start text (coursekit.student_guide.RUN_TIME).
RUN_TIME = {
    "where_cpus": "una GPU {gpu} amb {cpus} nuclis de CPU, com els de Colab",
    "where": "una GPU {gpu}",
    "amount_one": "**{minutes} minut**",
    "amount_many": "**{minutes} minuts**",
    "slower": "La GPU T4 gratuïta de Colab és més lenta: compteu-hi més temps.",
    "same": "6. **Quant triga.** En mode complet, executar aquest quadern sencer va trigar uns {amount} "
            "en {where} (sense comptar la baixada de les dades). {slower}",
    "earlier": "6. **Quant triga.** En mode complet, una versió anterior d'aquest quadern va trigar uns {amount} "
               "en {where} (sense comptar la baixada de les dades); el codi ha canviat des d'aleshores i encara no "
               "s'ha tornat a mesurar. {slower}",
}

# The student guide's texts in notebooks/, its run-time placeholder, and the roles (and cell ids) of the cells
# it adds (coursekit.student_guide.StudentGuide).
GUIDE = {
    "before_file": "abans_de_comencar.md",
    "handin_file": "comprovacio_i_entrega.md",
    "times_placeholder": "{temps_mode_complet}",
    "role_before": "abans-de-comencar",
    "role_handin": "comprovacio-i-entrega",
    "role_self_check": "comprovacio-final",
}

# The Colab form title of the cells that carry shared code (coursekit.nbshared.TITLE; braces doubled).
SHARED_TITLE = '# @title Codi comú del curs: {filename} (executeu-la; no cal obrir-la) {{ display-mode: "form" }}'

# The public mirror's README for students (coursekit.publish.StudentReadme).
README_TITLE = "Batch Normalization amb PyTorch — pràctiques"
README_INTRO = ("Obriu cada pràctica a Colab amb el seu botó, i **deseu-ne una còpia al vostre Drive** abans de "
                "començar (*Fitxer → Desa una còpia a Drive*). Cada quadern explica com lliurar-lo.")
README_BADGE = "Obre a Colab"


def configure(c) -> None:
    """Give the engine's components the course's words (``c``: the nbgrader config being built)."""
    c.TrustedChecks.error_name = TRUSTED_ERROR_NAME
    c.TrustedChecks.messages = dict(TRUSTED)
    c.SandboxKernelManager.output_notices = dict(OUTPUT_NOTICES)
    c.RepairSubmission.stub_note = STUB_NOTE
    c.InertOutputs.removed_note = REMOVED_NOTE  # (InertAutogradedOutputs too: a subclass)
    c.EvidenceWords.words = dict(EVIDENCE)      # (KeepSubmittedOutputs and ShowSubmittedOutputs)
    c.StudentGuide.self_check = dict(SELF_CHECK)
    c.StudentGuide.run_time = dict(RUN_TIME)
    for name, value in GUIDE.items():
        setattr(c.StudentGuide, name, value)
    c.SharedCells.title = SHARED_TITLE
    c.StudentReadme.title = README_TITLE
    c.StudentReadme.intro = README_INTRO
    c.StudentReadme.badge_text = README_BADGE
