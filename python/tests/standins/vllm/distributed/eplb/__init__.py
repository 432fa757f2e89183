"""Expert parallelism load balancer (stand-in)."""
