"""The exit codes every command shares (documented in `realjudge --help` and the README).

0 success; 1 some inputs could not be scored (unreadable files, corrupt archives, missing paths
given beside inputs that exist); 2 usage error (bad option, unknown model, corrupt bundle, no input
path exists at all); 3 internal error; 130 interrupted.
"""

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
