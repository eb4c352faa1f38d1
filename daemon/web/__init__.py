"""The daemon's web page: what it mined (pairs, rejections), how training goes, and pair curation; served with
/metrics and /healthz on `metrics.listen`. app.py holds the routes, templates/ and static/ what a browser gets."""
