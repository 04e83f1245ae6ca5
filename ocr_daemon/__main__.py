"""`python -m ocr_daemon` is the `ocr-daemon` command."""

from .cli import main

main()
