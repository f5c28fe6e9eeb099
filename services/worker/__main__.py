from graphmesh.rpc.host import serve
from services.worker.server import main

if __name__ == "__main__":
    serve(main)
