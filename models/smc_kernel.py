"""An SMC mutation kernel for PyMC's ``pm.sample_smc`` that mixes enough for evidence.

PyMC's random-walk kernel (:class:`pymc.smc.kernels.MH`) stops mutating a stage once the
particles' correlation with their starting points stops falling by ``correlation_threshold``.
On radon varying intercepts that left the log evidence 0.1 to 0.4 nats low even with the group
effects integrated out (5 parameters): the particles had not reached each tempered target, and
the spread across chains (about 0.05) could not show it. Running the adaptive mutation
:data:`REPEATS` times per stage removed the bias (-1082.70 +- 0.04 against the exact -1082.71).
"""

from __future__ import annotations

from pymc.smc.kernels import MH

#: adaptive mutation passes per SMC stage
REPEATS = 3


class RepeatedMH(MH):
    """:class:`pymc.smc.kernels.MH` whose mutation step runs :data:`REPEATS` times per stage."""

    def mutate(self):
        steps = 0
        for _ in range(REPEATS):
            super().mutate()
            steps += self.n_steps
        self.n_steps = steps


__all__ = ["REPEATS", "RepeatedMH"]
