"""`make reliability`: the service and the GitOps tool under load, faults and hostile input."""
