"""The ``talklike`` command line: a client of the services, plus the local-stack commands."""
