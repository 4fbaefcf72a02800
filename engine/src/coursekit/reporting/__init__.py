"""The parts of ``coursekit report`` (:mod:`coursekit.reports` puts them together).

* :mod:`.moodle`: the grades CSV Moodle imports, every cell neutralised;
* :mod:`.classdata`: who the students are, why a submission has no grade, pass rates, events to look at;
* :mod:`.feedback`: nbgrader's feedback, with the hidden tests' source hidden;
* :mod:`.render`: the class summary as markdown and HTML, every student string escaped.
"""
