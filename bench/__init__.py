"""`make bench`: the service against the servers people would otherwise pick, side by side."""
