"""Progressive rollouts across clouds: :mod:`.plan` (order, canary weight, bake time, gate bounds),
:mod:`.gates` (pure verdicts over what was measured), :mod:`.record` (the record in the state
store), :mod:`.start` and :mod:`.runner` (the stages as steps, the rollback), :mod:`.judge` (reading the
endpoints and judging a stage), :mod:`.guard` (other commands refused while a rollout owns its
channel), :mod:`.takeover`
(the health job finishing or undoing a rollout whose command died). See docs/operating.md.
"""
