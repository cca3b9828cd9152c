"""The control plane as a library: probes, state machines, routing decisions, the operator's overrides.

The package, by responsibility:

- configuration: :mod:`.config` (the models and loading), :mod:`.config_file` (the file itself),
  :mod:`.config_checks` and :mod:`.allowed_endpoints` (checks across keys), :mod:`.stacks`
  (``config from-stacks``: Pulumi outputs into a configuration), :mod:`.targets` (the buckets a
  publishing command talks to);
- wiring: :mod:`.wiring` turns a configuration into the state store, the routing backends, the
  buckets, the prober, and the plane assembled from them (:func:`~.wiring.open_plane`);
- the plane: :mod:`.plane` (:class:`~.plane.ControlPlane`: rounds, failover, failback, routing),
  :mod:`.steps` (the bodies of its transactions), :mod:`.reports` and :mod:`.status` (what the
  commands return: data, rendered by :mod:`orchestrator.render`);
- the parts it runs on: :mod:`.health` (probes, the prober, the per-cloud state machine),
  :mod:`.routing` (the router, pricing, the routing backends and their reconciler), :mod:`.store`
  (the state store: SQLite or an object store), :mod:`.types` (HealthState, Flip).

The pure parts (:mod:`.health.machine`, :mod:`.routing.router`) are wired to the edges (the
prober, the state store, the routing backends). Every command (``health``, ``failover``,
``failback``, ``route``, ``status``) and the scheduled job are methods of the plane; the CLI only
parses options and prints. The clock, the sleep and the HTTP transport are injected, so rounds are
reproducible in tests.

Every command has the same shape, so that one misbehaving cloud never stops the others' failover
and an operator never waits behind a probe:

1. **probe** with no state transaction open (:class:`~orchestrator.control.health.prober.Prober`: all
   clouds at once, each within ``health.timeout_s``, any answer a verdict);
2. **decide and commit** in one short transaction (:meth:`StateStore.atomically`, with a body
   from :mod:`orchestrator.control.steps`): read the machines and overrides, feed the
   observations, record the flips, decide, and commit the decision as the desired weights. No
   probe, SDK call or backend write happens inside it, so SQLite's write lock is held for
   milliseconds; an object store re-runs just this step (no probes) when another command
   committed in between;
3. **apply after commit** (:class:`~orchestrator.control.routing.reconcile.Reconciler`): each backend is
   read back and rewritten when it differs from the committed decision, independently of the
   others, each in its own worker (the watch waits for them only until its next round is due).
   A backend that fails is reported stale (exit code :data:`~.reports.EXIT_STALE_BACKEND`) and retried by
   the next reconciliation; the round's health state is committed regardless.

``health --once`` and ``health --watch`` hold the state's health-job lease
(:data:`~orchestrator.control.store.HEALTH_JOB_LEASE`) while they run, renewed inside every commit
(so a run that lost it commits nothing), so scheduled runs never pile up: a second one exits
with :class:`~orchestrator.control.errors.LeaseHeld` (exit 75).
"""
