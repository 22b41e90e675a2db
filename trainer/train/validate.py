"""`python -m trainer validate`: check a dataset's records exactly as training would, and report.

    python -m trainer validate --data_files Splits/modality/train --image_root /data/OmniMedVQA
    python -m trainer validate --config configs/qwen2-vl-2b/grpo/config_thinking.yaml

Takes the data options of the training recipes (`--data` is short for `--data_files`; a recipe's
training settings are ignored). Prints one `file:index: reason` line per bad record, then counts.
Exit status: 0 when every record is usable, 2 when some are not (or nothing could be read).
"""

import sys

from trainer.train.arguments import ScriptArguments
from trainer.train.data import DataError, prepare_data


def parse(argv: list[str]) -> ScriptArguments:
    from trl import TrlParser

    argv = ["--data_files" if a == "--data" else a for a in argv]
    parser = TrlParser((ScriptArguments,), prog="python -m trainer validate")
    # A training recipe also holds GRPO/SFT/model settings: those are not ours to check here.
    args, config_rest, cli_rest = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    if cli_rest:
        parser.error(f"unrecognized arguments: {' '.join(cli_rest)}")
    return args


def report(args: ScriptArguments) -> int:
    """Validate and print; the exit status."""
    try:
        data = prepare_data(args, sft=False)
    except DataError as err:
        for problem in err.problems:
            print(problem)
        print(f"\n{err}", file=sys.stderr)
        return 2
    for problem in data.problems:  # only with --skip_invalid
        print(problem)
    summary = data.summary()
    print(
        f"{summary['train_records']} usable training record(s), {summary['eval_records']} evaluation, "
        f"{summary['skipped_records']} invalid; files: {', '.join(data.files)}"
    )
    print(f"modalities: {summary['modalities']}\nquestion types: {summary['question_types']}")
    return 2 if data.problems else 0


def main(argv: list[str]) -> int:
    return report(parse(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
