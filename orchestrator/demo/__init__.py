"""``orchestrator demo``: the whole story on one machine, with no cloud account.

1. Start the three clouds' storage emulators on free loopback ports (moto for S3 and Route 53,
   gcp-storage-emulator, Azurite) with one bucket each, and a Route 53 hosted zone.
2. Train the digits classifier, sync it to the three buckets and verify it landed byte-identical.
3. Start three endpoints (``orchestrator serve``), each loading ``models/digits/LATEST`` from its own
   cloud's bucket by URI.
4. Probe them and route by cost under the latency SLO: weights applied to Route 53 (on moto) and
   to a routing file, the decision table printed.
5. Send steady prediction traffic, spread the way clients of the weighted DNS record spread, with
   one retry on failure; ``health --watch --apply`` runs alongside.
6. Kill the aws endpoint: detection, automatic failover, traffic continuing; restart it: failback
   after the healthy threshold and the hold-down.
7. ``orchestrator failover --from gcp`` by hand, then ``orchestrator failback --to gcp``.
8. Train a second version, sync it, and watch the endpoints hot-swap with canary checks passing.
9. Print the summary, write a report with a traffic-share plot, stop everything (also on Ctrl-C).

:mod:`.world` owns the processes, :mod:`.traffic` the clients (:class:`~.traffic.TrafficGenerator`),
:mod:`.report` the timeline and the report, :mod:`.story` the steps (:func:`~.story.run_demo`).
:mod:`.emulators` starts the storage emulators and :mod:`.processes` the endpoints (the tests use
both too). Importing this package imports none of them.
"""
