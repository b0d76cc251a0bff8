import sys

try:
    from gpt2cli.cli import main
except KeyboardInterrupt:  # Ctrl-C before main() can catch it
    sys.exit(130)

main()
