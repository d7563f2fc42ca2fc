"""Team mode: PostgreSQL, an S3 object store and the MLflow tracking server with basic auth, brought up on one
machine by `./run team up` (docs/team.md)."""
