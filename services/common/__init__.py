"""What every talklike service shares: errors, settings, the data home and the gRPC server runtime."""
