"""Intake, run by `ocr-daemon watch` and `run`: watch, settle, filter, claim, dispatch, reap."""
