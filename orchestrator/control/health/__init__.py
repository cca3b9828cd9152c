"""Health: probing endpoints (:mod:`.probe`) and the per-cloud state machine (:mod:`.state`)."""
