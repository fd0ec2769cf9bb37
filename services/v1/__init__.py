"""Generated from protos/talklike/v1 by `make proto`. Do not edit."""
