"""Worker roles (one class each) and the hybrid worker that composes them in one Ray actor."""
