"""Batch jobs for data teams, on Ray Data over the same cluster (issue 6, point 6).

Each job is a module with ``main(argv)``, run locally or on the cluster alike::

    python -m jobs.analytics --date 2026-11-28 --out s3://analytics/raychat
    ray job submit --working-dir . -- python -m jobs.analytics --date 2026-11-28 --out s3://analytics/raychat

    analytics     messages per conversation and day, active users, DAU  -> Parquet
    export_user   one user's messages, conversations, media list         -> JSONL
    retention     delete events (and their media) older than each conversation's policy
    backup        every collection (canonical Extended JSON) + a manifest
    restore       a backup into an empty database, indexes recreated

Shared parts: ``cli`` (arguments, settings, Ray), ``mongo_source`` (MongoDB read in parallel
``_id`` ranges, a Ray Data datasource), ``files`` (S3 or local output, JSON-lines sink). The rules
that decide what a job does (``retention_rules``, ``backup_format``) import no Ray.
"""
