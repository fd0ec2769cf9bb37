"""The disk-agent sidecar: the disk_manager library behind talklike.v1.DiskAgentService."""
