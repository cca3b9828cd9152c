"""Publishing: an artifact to every cloud's bucket, checked, then ``LATEST`` moves.

Modules: :mod:`.sync` (upload what differs, re-verify, write the manifest, move the pointer),
:mod:`.verify` (what each bucket holds, against the manifest, and whether the pointers agree) and
:mod:`.sign` (signing a local artifact that matches its own manifest). The artifact format and the
bucket layout are the core's (:mod:`orchestrator.core.artifact`).
"""
