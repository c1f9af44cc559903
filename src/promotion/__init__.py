"""The deployment stage: whether a registered version may serve, and putting it there.

- `gate`: the promotion gate, which weighs the evidence in order and decides;
- `evidence`: labelled captures scored by both versions, cross-validated scores;
- `rule`: the one promotion rule (paired comparison, McNemar's test, thresholds);
- `decision`: the decisions, their status names and the words that explain them;
- `requested_versions`: which versions `--model-version` and `--shadow` name;
- `compatibility`: whether a shadow takes the served model's inputs;
- `rollout`: deploy, smoke test (`smoke_test`), put back what served on failure;
- `audit`: every decision kept as registry tags, and read back;
- `decision_card`: the decision and the history on the pipeline's card;
- `errors`: the error a deployment that cannot go on fails with.
"""
