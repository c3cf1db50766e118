"""Backup and restore (to a directory or an S3-compatible bucket) and the JSONL note format
used for export and import: `amem backup|restore|backups|export|import`."""
