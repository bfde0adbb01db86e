"""The web app's helpers (app.py): checking uploads, the inference worker and its queue, the HTTP routes."""
