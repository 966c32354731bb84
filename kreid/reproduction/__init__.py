"""The reproduction study (issue 11): the papers' findings re-run at CPU scale on real data.

Three modules: :mod:`~kreid.reproduction.studies` (the paper tables as data),
:mod:`~kreid.reproduction.runner` (training and scoring the runs) and
:mod:`~kreid.reproduction.tables` (statistics, verdicts, tables, figures).

A :class:`Study` is one paper table: a base config (the backbone, input size,
steps and data every arm shares), its arms (what the table varies), how the
trained models are scored, and the paper's claims as ordered pairs of arms.
:func:`run` trains every arm for every seed (a finished run is skipped, a
killed one resumes from its checkpoint), scores it, and writes the study's
table (``table.md``, ``summary.json``) and figure (``bars.png``; the
distractor curve for ``distractors``) into ``<out>/<study>/``;
``bin/reproduce.py`` is its command line and docs/REPRODUCTION.md holds the
results.

Verdicts: Welch's t-test on three or more seeds per arm at p < 0.05
(:mod:`~kreid.reproduction.tables`, issue #29).

The shared CPU-scale recipe, and why it is not LuNet: :mod:`~kreid.reproduction.studies`.
"""

from kreid.reproduction.runner import run, score_run  # noqa: F401
from kreid.reproduction.studies import (DEFAULT_STEPS, STUDIES, TTA_ORDER, Arm,  # noqa: F401
                                        Claim, Study, base_config)
from kreid.reproduction.tables import (markdown, run_dir, summarise, verdict,  # noqa: F401
                                       write_outputs)
