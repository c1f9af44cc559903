"""The team stack: one command starts, on 127.0.0.1, a PostgreSQL cluster of the
project's own, an S3 stand-in with a bucket, and `mlflow server` with basic auth on
them; one command stops all of it. See docs/team-setup.md.
"""
