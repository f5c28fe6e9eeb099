from graphmesh.grpc_fork import keep_grpc_fork_support_off

keep_grpc_fork_support_off()  # before grpc is imported: see graphmesh/grpc_fork.py

from graphmesh.rpc.host import serve  # noqa: E402
from services.gateway.server import main  # noqa: E402

if __name__ == "__main__":
    serve(main)
