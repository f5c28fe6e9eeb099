"""gRPC plumbing shared by the services: server, error mapping, conversions."""
