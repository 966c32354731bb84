"""Re-run the papers' findings at CPU scale on real data (docs/REPRODUCTION.md).

    python bin/reproduce.py --study=hermans_table1 --data=../shared/data --out=runs/reproduce
    python bin/reproduce.py --study=all --smoke --out=/tmp/smoke     # every study in miniature

Finished runs are skipped and a killed run resumes from its last checkpoint;
each study writes table.md, summary.json and its figure into <out>/<study>/.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

STUDY = flags.DEFINE_string("study", None, "a study name (kreid.reproduction.STUDIES) or all",
                            required=True)
OUT = flags.DEFINE_string("out", "runs/reproduce", "output folder (one subfolder per study)")
DATA = flags.DEFINE_string("data", os.environ.get("KREID_DATA", "../shared/data"),
                           "folder holding cuhk03_labeled/ and peta/")
SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"],
                          "seeds of every arm (three: the verdicts need them)")
STEPS = flags.DEFINE_integer("steps", 0, "training steps per run (0: the default budget; "
                             "smoke runs: 2)")
SMOKE = flags.DEFINE_bool("smoke", False, "every run in miniature on the synthetic set")
ARMS = flags.DEFINE_list("arms", None, "run only these arms of the study")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from kreid import reproduction

    names = list(reproduction.STUDIES) if STUDY.value == "all" else [STUDY.value]
    steps = STEPS.value or (2 if SMOKE.value else reproduction.DEFAULT_STEPS)
    for name in names:
        summary = reproduction.run(name, OUT.value, DATA.value,
                                   seeds=[int(s) for s in SEEDS.value], steps=steps,
                                   smoke=SMOKE.value, arms=ARMS.value)
        print(reproduction.markdown(summary))


if __name__ == "__main__":
    from kreid.cli import run

    run(main)
