"""The Med-R1 trainer: `python -m trainer <command>`; with no command it lists them.

    train/        GRPO and SFT on TRL: recipes' arguments, data sources and validation, rewards,
                  the starting policy, run outputs, LoRA merge (commands grpo, sft, validate, merge)
    eval/         batch scoring, accuracy tables, cross-generalisation matrices (eval, matrix)
    phantoms/     the synthetic 8 x 5 phantom benchmark: drawing, questions, DICOM (synth)
    experiments/  the bundled demo policy's build (demo) and the weak-start GRPO experiment

Imports go one way: trainer -> medr1_demo, never back.
"""
