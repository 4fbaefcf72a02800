"""The parts of intake (:mod:`coursekit.intake`): Moodle's export to ``submitted/``.

* :mod:`.names`: Moodle's file names, the names students give notebooks, student ids;
* :mod:`.roster`: the course roster CSV;
* :mod:`.identify`: which assignment a notebook's content belongs to;
* :mod:`.plan`: the decision, for every extracted file, whether and where it is collected (pure);
* :mod:`.plugins`: nbgrader's ``zip_collect`` extractor and collector plugins;
* :mod:`.record`: originals kept, the intake report, events.
"""
