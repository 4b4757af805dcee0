"""A run's records as tagged lines on stdout, and the run rebuilt from them elsewhere (issue 14).

With ``EXPERTRACK_STREAM=stdout`` a training process writes, besides its local store, every batch of records its
writer commits (the run's fields, config, metric definitions, scalars, arrays, summary values, files, environment,
end) to its stdout as tagged lines. Anything that relays that stdout (``modal run``, ``ssh``, ``srun``,
``kubectl logs -f``) carries them to an ``expertrack run -- LAUNCHER ...`` on your machine, which hides them from
the terminal and rebuilds the same run, with the same id, in the local store (expertrack.stream.rebuild).

One line::

    @@xt1 RUN_ID SESSION SEQ CRC PAYLOAD\\n

- ``@@xt1 `` is the marker and the format's version (1). It is searched for anywhere in a line, so a launcher
  that prefixes lines (``kubectl logs --prefix``, ``srun --label``) does not hide them; what precedes it is shown.
- ``RUN_ID`` the run's id; ``SESSION`` 16 hex digits drawn by each process that streams the run (a resumed run
  gets a new session); ``SEQ`` the line's number in its session, from 0, each line one more.
- ``CRC`` the CRC-32 (8 hex digits) of ``RUN_ID SESSION SEQ PAYLOAD``: a line cut short, two lines interleaved
  by a launcher, or a line altered on the way fails it.
- ``PAYLOAD`` base64 of zlib-compressed JSON: a list of records, each a list whose first item names its kind
  (encode.py). Line 0 of a session starts with the ``run`` record (id, name, project, group, tags, notes, config).

A line is at most ``MAX_LINE_BYTES``. The receiver drops, and says once per kind of problem, any line that is
malformed, fails its CRC, is longer than that, repeats a sequence number already applied, or names a run this
stream did not announce; it never writes to a run that was in the local store before the stream announced it.
"""

from __future__ import annotations

MARKER = b"@@xt1 "
VERSION = 1
MAX_LINE_BYTES = 256 * 1024  # the receiver refuses longer lines; the sender never writes one
# The sender's target: this much JSON per line (about 25 KiB once compressed). Lines below PIPE_BUF (4 KiB),
# which a pipe takes in one piece even from concurrent writers, cost 3x the writer's time here (measured with
# benchmarks/stream_overhead.py); a longer line is cut only when the pipe is full while another thread or process
# writes to it, and the checksum then drops it.
SEND_RAW_BYTES = 64 * 1024
ENV_VAR = "EXPERTRACK_STREAM"
