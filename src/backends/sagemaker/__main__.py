"""`python -m backends.sagemaker status|delete --config ...`: see `backends.sagemaker.cli`."""

import sys

from backends.sagemaker.cli import main

sys.exit(main())
