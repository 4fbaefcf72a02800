"""coursekit: the tooling around the Batch Normalization nbgrader course.

One module per capability (see README "Architecture"):

- ``paths``      where things live in a course root (source/, release/, ...)
- ``nbconfig``   how the course's extensions plug into nbgrader's config
- ``release``    release generation (nbgrader generate_assignment + Colab badge)
- ``nbshared``   one source of truth for helper code inlined into notebooks
- ``classgen``   generated student submissions (demo class, test catalogues)
- ``intake``     LMS export -> submitted/<student>/<assignment>/ (zip_collect plugin)
- ``repair``     sanitize preprocessor that restores Colab-damaged notebooks
- ``grading``    parallel, resumable autograde over a whole class
- ``sandbox``    isolation of the kernel that runs student code
- ``trusted``    out-of-kernel re-checks that student code cannot tamper with
- ``reports``    grades CSV, feedback, class summary
- ``bench``      speed measurements (make bench)
- ``demo``       the end-to-end demo (make demo)
"""

__version__ = "0.1.0"
