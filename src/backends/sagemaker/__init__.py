"""The SageMaker backend: serve from an Amazon SageMaker endpoint, monitor what it captures.

Selected with `--config project config/sagemaker.yml` (`backend.module: backend.Sagemaker`).
Settings under `backend:`:

- `target`: the endpoint name.
- `data_capture_uri`: where SageMaker writes every request and response (S3 prefix).
- `ground_truth_uri`: where labels go, in the format SageMaker Model Monitor reads.
- `region`: the AWS region.
- `assume_role` (optional): an IAM role ARN assumed for every AWS call, and the role
  SageMaker runs the model with unless `execution_role` says otherwise.
- `execution_role` (optional): the role SageMaker runs the model with.
- `image` (optional): the MLflow serving image; default `mlflow-pyfunc:<mlflow version>`
  from the account's ECR, as `mlflow sagemaker build-and-push-container` pushes it.
- `model_artifacts_uri` (optional): where model archives go; default `models/` in the
  data-capture bucket.
- `instance_type` (default ml.m5.large), `instance_count` (default 1),
  `wait_seconds` (longest wait for the endpoint to come up, default 1800).

An unknown key is refused, naming the nearest valid one; the hyphenated spellings of
earlier versions (`data-capture-uri`) still load, with a FutureWarning.

Every resource the backend creates is named after the endpoint and tagged
`endpoint=<name>` and `model_version=<version>`; the production variant is named
`version-<N>` and a shadow variant (`deploy(..., shadow=ShadowModel(...))`, SageMaker's
`ShadowProductionVariants`: a copy of every request, answers captured, never returned)
`shadow-<M>`, so each capture file's S3 path says which version answered, and how.
Batch predictions saved through `save(..., source="batch")` go beside them under
`batch-<N>`, in the same capture format. To stop paying for it:

    uv run python -m backends.sagemaker delete --config config/sagemaker.yml

The package, along its seams: `formats` (capture and ground-truth records, S3 layout),
`settings`, `connection` (AWS clients), `endpoint` (what is deployed), `deployment`,
`teardown`, `data` (invoke, load, label), `cli`; `backend` joins them as `Sagemaker`.
"""

from backends.sagemaker.backend import Sagemaker
from backends.sagemaker.settings import SagemakerSettings

__all__ = ["Sagemaker", "SagemakerSettings"]
