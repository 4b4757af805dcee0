"""Capture: run a training program as a child process and turn its console output into a run.

``expertrack.capture.parsers`` holds the pure, I/O-free parsers that read the child's output line by line
(see docs/parsers.md); the child-process runner and the ``run``/``reparse`` commands sit on top of them.
"""
