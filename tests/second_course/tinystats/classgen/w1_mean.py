"""The catalogue of w1_mean: right answers in two styles, plausible mistakes, delegation."""
from coursekit.classgen import Variant

MEDIA = "def media(xs):\n    return sum(xs) / len(xs)\n"
VARIANZA = "def varianza(xs):\n    m = media(xs)\n    return sum((x - m) ** 2 for x in xs) / len(xs)\n"

VARIANTS = [
    Variant("solucion", "the instructor's answers", {"media_impl": MEDIA, "varianza_impl": VARIANZA}),
    Variant("otro_estilo", "a loop and a two-pass variance (full marks)",
            {"media_impl": "def media(xs):\n    total = 0.0\n    for x in xs:\n        total += x\n"
                           "    return total / len(xs)\n",
             "varianza_impl": "def varianza(xs):\n    n = len(xs)\n    s = sum(xs)\n"
                              "    return sum(x * x for x in xs) / n - (s / n) ** 2\n"}),
    Variant("division_entera", "integer division in the mean (and so in the variance)",
            {"media_impl": "def media(xs):\n    return sum(xs) // len(xs)\n", "varianza_impl": VARIANZA},
            fails={"test_media", "test_varianza"}),
    Variant("varianza_muestral", "divides by n - 1 (the sample variance)",
            {"media_impl": MEDIA,
             "varianza_impl": VARIANZA.replace("/ len(xs)", "/ (len(xs) - 1)")},
            fails={"test_varianza"}),
    Variant("delega", "hands the mean to the statistics module (right numbers, not their own)",
            {"media_impl": "def media(xs):\n    import statistics\n    return statistics.fmean(xs)\n",
             "varianza_impl": VARIANZA},
            fails={"test_media"}),
    Variant("en_blanco", "hands in the release as it is", {}, fails="all"),
]
