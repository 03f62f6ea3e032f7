"""`ragtune choose`: the bake-off on its own floor, above evaluate/ and finetune/.

`recipe` holds `Choice` (the stages, called in order by `run`); `parts` the split and the tuning pick; `answers` the
task's answer shape; `train` the training data as the team gave it; `synth_test` synthetic test questions from
DOCS; `inputs` the fingerprints of a run's inputs and the lock on its folder; `plan` `choose --plan`.
"""

from ragtune.choose.answers import answer_cap, shaped
from ragtune.choose.parts import Split, best_trial, split_questions, with_values
from ragtune.choose.recipe import REBUILT, STAGES, Choice

__all__ = ["Choice", "STAGES", "REBUILT", "Split", "answer_cap", "best_trial", "shaped", "split_questions",
           "with_values"]
