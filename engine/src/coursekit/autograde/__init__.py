"""The parts of ``coursekit grade`` (:mod:`coursekit.grading` ties them together).

* :mod:`.plan`: which submissions to grade (resuming an interrupted run) and
  what the course's nbgrader configuration says (course id, sandboxed or not);
* :mod:`.worker`: the long-lived worker process that runs nbgrader's own
  ``Autograde`` converter, one submission at a time, on a scratch gradebook;
* :mod:`.merge`: the autograder-owned fields of one submission, read from a
  scratch gradebook and written into the course gradebook (the single writer);
* :mod:`.pool`: the coordinator: starts and replaces workers, hands out
  submissions, enforces ``--timeout``, merges serially, records events;
* :mod:`.warm`: the sandbox's warm kernel server for one run.
"""
