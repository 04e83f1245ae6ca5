"""`python -m ocr_daemon` is the `ocr-daemon` command."""

from ocr_daemon.cli import main

main()
