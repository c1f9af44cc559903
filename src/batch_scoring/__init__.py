"""The batch-scoring stage: what `src/pipelines/scoring.py` runs, one job per module.

- `request`: the parameters and locations refused before any work.
- `locations`: local and s3:// files, the staging area, publishing in one move.
- `reading`: the input's format, columns and chunks.
- `model_files`: the version scored, and its files packed for the chunk tasks.
- `rows`: valid rows, refused rows with their reasons, the scorer's answers.
- `splitting`: `start` stages the input's chunks and sets refused rows aside.
- `quality_gate`: the refused share and the drift gate, against the training data.
- `background`: a forked process the gate runs in, beside the split.
- `chunk_scoring`: a chunk task scores its rows and stages its part of the output.
- `output`: the output's parts, assembled and published.
- `scoring_card`: the run's card.
- `memory`: each task's peak memory; `errors`: `ScoringError`.
"""
