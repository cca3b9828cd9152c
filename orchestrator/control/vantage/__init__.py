"""Several health jobs, one view, one writer: vantage points, the quorum rule and the leader lease.

A vantage point is one health job (``orchestrator health --once --apply`` on a schedule, or
``--watch``) with an id (``vantage.id`` or ``$ORCHESTRATOR_VANTAGE``) and a home location in its
own cloud (``vantage.points.<id>.storage``). Every round it:

1. probes every cloud, as a lone job does (:mod:`orchestrator.control.health`);
2. publishes what it saw to its home (:mod:`.observation`: per cloud the verdict, its reason and
   when; whether it could reach anything at all; the operator overrides it knows), and reads the
   other points' observations from theirs, all within ``vantage.read_timeout_s``;
3. computes the quorum view (:mod:`.quorum`): a cloud is failing only when a strict majority of
   the *voters* see it failing, where a voter is a point whose observation is fresh (at most
   ``freshness_s`` old) and which reached at least one endpoint; with fewer than ``min_voters``
   voters there is no quorum and that cloud's state is left as it is. A point that could see
   nothing, or whose observation cannot be read, is unreachable, not a vote;
4. feeds that view into its state machine (the thresholds and hold-downs as before), decides the
   weights (same view, same decision on every point) and commits them to its own state;
5. applies them to the routing backends only while it holds the leader lease
   (:mod:`.lease`: a copy in each of ``lease_at``'s homes, held by whoever wrote a strict majority
   of them with conditional writes, with an expiry and an epoch), and every write to a backend
   carries the lease's epoch, which the backend refuses when it is older than the last it
   accepted (fencing: :class:`~orchestrator.control.errors.Fenced`).

:mod:`.coordinator` ties these to the plane. docs/design/quorum.md gives the reasons.
"""

from __future__ import annotations
