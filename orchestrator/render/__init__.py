"""What the commands and the demo show: Rich tables on a terminal, JSON documents for automation.

:mod:`.output` (the consoles, one-line errors, JSON on standard output, :func:`~.output.shown` for
text that came from elsewhere), :mod:`.control` (health rounds, decisions, status, the operator's
commands) and :mod:`.publish` (sync progress and results, verify). Rendering takes the data the
libraries return (:mod:`orchestrator.control`, :mod:`orchestrator.publish`) and decides nothing.
"""
